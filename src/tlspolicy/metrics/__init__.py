"""What the server counts: the sink protocols the code records into (and do-nothing
defaults), and the Prometheus registry behind them."""
