"""A real Postfix 3.10 (Debian 13) with TLSRPT, in a chroot inside the lab namespace.

How it is put together (see ``netns.py`` for the namespace, ``trixie.py`` for the root):
* The cached Debian 13 root is the lower layer of an overlay mounted inside the namespace;
  everything Postfix writes (config, queue, log) lands in this instance's upper directory, so
  the cached root never changes and concurrent instances do not meet. ``proc`` and ``/dev``
  are mounted into it; ``/run/tlsrpt`` is a bind mount of a host directory, where the TLSRPT
  collector binds its datagram socket (``smtp_tlsrpt_socket_name``). The same directory is
  also mounted at ``$queue_directory/run/tlsrpt``, so the README's relative
  ``run/tlsrpt/tlsrpt.sock`` reaches the same socket.
* ``/etc/resolv.conf`` names 127.0.0.1 (a forwarder to the lab's validating Unbound, with
  ``trust-ad`` so glibc keeps the AD bit); ``smtp_tls_policy_maps`` names a forwarder to our
  socketmap server, after a static table (``texthash``) of experiment answers.
* All master.cf services run unchrooted (the root itself is the jail), ``smtpd`` is off (mail
  is injected with the root's ``sendmail``) unless ``configure(smtpd=True)``: then it listens on
  the namespace's 127.0.0.1:25 (``inet_interfaces = loopback-only``). ``configure`` also takes
  extra main.cf settings (``postconf -e``) and master.cf text, for the README's TLSRPT
  transport. ``master -d`` runs in the foreground under the
  lab's reaper, so it dies with the test process; the log goes to ``LOG_FILE`` via postlogd.
* Retries are pushed an hour out: one delivery attempt per message during a test.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import LabNamespace
from tests.lab.netutil import Daemon, wait_until

TLSRPT_DIR = "/run/tlsrpt"
TLSRPT_SOCKET = f"{TLSRPT_DIR}/tlsrpt.sock"
QUEUE_TLSRPT_DIR = "/var/spool/postfix/run/tlsrpt"  # "run/tlsrpt" relative to $queue_directory
LOG_FILE = "/var/log/postfix.log"
CA_FILE = "/etc/ssl/lab-ca.pem"
STATIC_MAP = "/etc/postfix/tls_experiments"
START_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 30.0
MYHOSTNAME = "postfix310.lab"

MAIN_CF = """\
compatibility_level = 3.10
myhostname = {myhostname}
myorigin = $myhostname
mydestination =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
maillog_file = {log_file}
smtputf8_enable = no
notify_classes =
delay_warning_time = 0
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
smtp_host_lookup = dns
smtp_dns_support_level = dnssec
dnssec_probe = ns:lab
smtp_address_preference = ipv4
smtp_connect_timeout = 5s
smtp_connection_cache_on_demand = no
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtp_tls_CAfile = {ca_file}
smtp_tls_session_cache_database =
smtp_tls_policy_maps = texthash:{static_map}, {policy_map}
smtp_tls_enforce_sts_mx_patterns = yes
smtp_tlsrpt_enable = yes
smtp_tlsrpt_socket_name = {socket}
smtp_tlsrpt_skip_reused_handshakes = no
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The final log line Postfix wrote for one recipient."""

    rcpt: str
    status: str  # sent | deferred | bounced
    relay: str
    line: str


class Postfix310:
    """One Postfix instance; ``send`` injects a message, ``wait_delivery`` waits for its fate."""

    def __init__(self, workdir: Path, root: Path) -> None:
        self.dir = workdir
        self.root = root
        self.merged = workdir / "root"
        self.tlsrpt_dir = workdir / "tlsrpt"  # the host side of TLSRPT_DIR
        for sub in ("root", "upper", "work", "tlsrpt"):
            (workdir / sub).mkdir(mode=0o755, exist_ok=True)
        self.tlsrpt_dir.chmod(0o755)
        q = shlex.quote
        m = q(str(self.merged))
        setup = "\n".join(
            [
                f"mount -t overlay overlay -o lowerdir={q(str(root))},"
                f"upperdir={q(str(workdir / 'upper'))},workdir={q(str(workdir / 'work'))} {m}",
                f"mount -t proc proc {m}/proc",
                f"mount --bind /dev {m}/dev",
                f"mkdir -p {m}{TLSRPT_DIR}",
                f"mount --bind {q(str(self.tlsrpt_dir))} {m}{TLSRPT_DIR}",
                f"mkdir -p {m}{QUEUE_TLSRPT_DIR}",
                f"mount --bind {q(str(self.tlsrpt_dir))} {m}{QUEUE_TLSRPT_DIR}",
            ]
        )
        self.ns = LabNamespace(workdir, setup, ip=("chroot", str(root), "ip"))
        self.master = Daemon("postfix-master", [], workdir / "master.log")
        self._count = 0

    @property
    def tlsrpt_socket(self) -> Path:
        """Where the collector must bind, on the host."""
        return self.tlsrpt_dir / Path(TLSRPT_SOCKET).name

    def start_namespace(self) -> LabNamespace:
        self.ns.start()
        return self.ns

    def file(self, inside: str) -> Path:
        return self.ns.path(self.merged / inside.lstrip("/"))

    def postconf(self, *args: str) -> str:
        done = self.ns.run(["chroot", str(self.merged), "postconf", *args])
        return done.stdout.decode()

    def configure(
        self,
        *,
        policy_map: str,
        ca_pem: bytes,
        static: dict[str, str],
        settings: Sequence[str] = (),
        master_cf: str = "",
        smtpd: bool = False,
    ) -> None:
        """Write main.cf, the static experiment table, resolv.conf and the CA file.

        ``settings`` (``name = value`` lines) are applied with ``postconf -e`` after main.cf is
        written, ``master_cf`` is appended to master.cf; ``smtpd`` keeps the smtp/inet service.
        """
        self.file("/etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions edns0 trust-ad\n")
        self.file(CA_FILE).write_bytes(ca_pem)
        self.file(STATIC_MAP).write_text("".join(f"{k} {v}\n" for k, v in static.items()))
        main_cf = MAIN_CF.format(
            myhostname=MYHOSTNAME,
            log_file=LOG_FILE,
            ca_file=CA_FILE,
            static_map=STATIC_MAP,
            policy_map=policy_map,
            socket=TLSRPT_SOCKET,
        )
        self.file("/etc/postfix/main.cf").write_text(main_cf)
        for setting in settings:
            self.postconf("-e", setting)
        if master_cf:
            master = self.file("/etc/postfix/master.cf")
            master.write_text(master.read_text() + master_cf.rstrip("\n") + "\n")
        self.postconf("-F", "*/*/chroot=n")
        if not smtpd:
            self.postconf("-MX", "smtp/inet")

    def start(self) -> None:
        self.ns.run(["chroot", str(self.merged), "postfix", "check"])
        self.master.argv = self.ns.command(
            ["chroot", str(self.merged), "/usr/lib/postfix/sbin/master", "-d"]
        )
        self.master.start()
        wait_until(
            lambda: "daemon started" in self.log(),
            timeout=START_TIMEOUT_S,
            what="Postfix master to start",
            alive=self.master,
        )

    def version(self) -> str:
        return self.postconf("-h", "mail_version").strip()

    def log(self) -> str:
        try:
            return self.file(LOG_FILE).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def new_rcpt(self, domain: str) -> str:
        """A recipient address no other delivery of this run uses."""
        self._count += 1
        return f"t{self._count}-{uuid.uuid4().hex[:8]}@{domain}"

    def send(self, rcpt: str, *, subject: str = "lab test") -> None:
        """Inject one message with the null sender (no bounces) through ``sendmail``."""
        message = (
            f"From: lab@{MYHOSTNAME}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello\r\n"
        ).encode()
        argv = ["chroot", str(self.merged), "/usr/sbin/sendmail", "-i", "-f", "", "--", rcpt]
        self.ns.run(argv, input=message)

    def wait_delivery(self, rcpt: str, *, timeout: float = DELIVERY_TIMEOUT_S) -> Delivery:
        """The first final status line for ``rcpt`` (sent, deferred or bounced)."""
        pattern = re.compile(
            rf"to=<{re.escape(rcpt)}>,.*?relay=(?P<relay>[^,]*),.*?status=(?P<status>\w+)"
        )
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                found = pattern.search(line)
                if found:
                    return Delivery(rcpt, found["status"], found["relay"], line)
            if not self.master.running:
                raise RuntimeError(f"Postfix exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no delivery status for {rcpt}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.master.stop()
        self.ns.stop()
