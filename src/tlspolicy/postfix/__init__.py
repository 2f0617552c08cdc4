"""What the local Postfix is and says: which map fits its version, and reading its
mail log for domains to warm."""
