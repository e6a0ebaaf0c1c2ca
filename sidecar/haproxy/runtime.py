"""HAProxy runtime API (admin stats socket) and master CLI client over UNIX sockets.

Two small clients and pure parsers for HAProxy 2.6 output:

* :class:`RuntimeAPI` talks to a worker's admin socket (``stats socket ... level admin``): one
  command per connection with :meth:`RuntimeAPI.execute`, or many over one connection in prompt
  mode with :meth:`RuntimeAPI.execute_many` (HAProxy ends every answer with ``"\\n> "`` there, a
  delimiter that ``;``-batches lack: some answers such as ``del server``'s carry no blank line).
  When the admin socket file is gone (deleted under a running HAProxy: a reload hands the old
  listening socket to the new worker, so the file never comes back) or refuses connections, and
  the master socket is known, commands go through the master CLI as ``@1 <command>``, which
  reaches the current worker.
* :class:`MasterCLI` talks to the master socket (``-S``): ``show proc`` and ``reload``. In 2.6 a
  reload is asynchronous and closes the connection, so :meth:`MasterCLI.reload_and_confirm` polls
  ``show proc`` until a new worker pid shows or the ``failed`` counter says the reload failed.

Errors HAProxy reports in-band ("No such server." ...) raise :class:`RuntimeAPIError` carrying the
command and HAProxy's message; socket problems raise :class:`RuntimeUnavailable`.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from marathon_bridge.errors import MarathonBridgeError

log = logging.getLogger(__name__)

# admin_state bits of "show servers state" (HAProxy's SRV_ADMF_* flags)
FMAINT = 0x01  # forced maintenance (CLI / API)
IMAINT = 0x02  # inherited from a tracked server
CMAINT = 0x04  # "disabled" in the configuration (kept as a record once enabled at runtime)
FDRAIN = 0x08  # forced drain
IDRAIN = 0x10  # inherited drain
RMAINT = 0x20  # maintenance because DNS resolution failed
HMAINT = 0x40  # maintenance because the server has no address (init-addr none)
MAINT_FLAGS = FMAINT | IMAINT | RMAINT | HMAINT
DRAIN_FLAGS = FDRAIN | IDRAIN

OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}

# HAProxy's own error texts (2.6), matched as prefixes of an answer's first line
ERROR_TEXTS = (
    "No such server",
    "No such backend",
    "Can't find backend",
    "Already exists a server with the same name in backend",
    "Only servers in maintenance mode can be deleted",
    "Server still has connections attached to it",
    "This server cannot be removed at runtime",
    "Backend must use a dynamic load balancing",
    "Health check was not configured on this server",
    "Agent was not configured on this server",
    "Unknown command",
    "Permission denied",
    "Invalid addr",
    "Require 'backend/server'",
    "'set server <srv> state' expects",
    "'set server <srv>' only supports",
    "Invalid weight",
    "Backend is using a static LB algorithm",
    "unknown keyword",
    "No such proxy",
    "Absolute weight",
    "Relative weight",
    "Empty weight",
    "'server' expects",
    "Update for the current server address family",
)

TO_WORKER = "@1 "  # master CLI prefix: pass the command on to the current worker

BATCH_BYTES = 8192  # commands sent per connection in prompt mode (HAProxy's buffer is 16 KB)

# what a successful write answers (anything else is HAProxy's refusal)
ADDED = "New server registered."
DELETED = "Server deleted."


class RuntimeAPIError(MarathonBridgeError):
    """HAProxy refused a runtime command; ``message`` is HAProxy's own text."""

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        self.message = message
        super().__init__(f"{command!r}: {message}")


class RuntimeUnavailable(RuntimeAPIError):
    """The socket could not be reached, or the connection broke before an answer came."""


class ReloadFailed(MarathonBridgeError):
    """The master reported a failed reload (``failed`` counter up, ``ReloadFailed`` prompt)."""


# ----------------------------------------------------------------------------- parsers (pure)


def is_error_answer(answer: str) -> bool:
    """True when ``answer`` is one of HAProxy's refusal texts."""
    first = answer.strip().split("\n", 1)[0].strip()
    if not first:
        return False
    lowered = first.lower()
    return any(lowered.startswith(text.lower()) for text in ERROR_TEXTS) or (
        "is not accepted for dynamic server" in first
    )


def parse_csv_stat(text: str) -> list[dict[str, str]]:
    """``show stat`` CSV -> one dict per row, keyed by the ``# `` header names.

    Copes with the trailing comma on every line and the literal ``-`` column (dropped).
    """
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            header = line.lstrip("#").strip().rstrip(",").split(",")
            continue
        if not header:
            continue
        values = line.rstrip("\n").split(",")
        row = {name: values[i] if i < len(values) else "" for i, name in enumerate(header)}
        row.pop("-", None)
        rows.append(row)
    return rows


def parse_info(text: str) -> dict[str, str]:
    """``show info`` ``Key: value`` lines -> dict."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state`` (format version 1)."""

    backend_id: int
    backend: str
    server_id: int
    name: str
    address: str
    op_state: int
    admin_state: int
    uweight: int
    iweight: int
    check_state: int
    port: int
    fqdn: str = "-"

    @property
    def in_maintenance(self) -> bool:
        return bool(self.admin_state & MAINT_FLAGS)

    @property
    def draining(self) -> bool:
        return bool(self.admin_state & DRAIN_FLAGS) and not self.in_maintenance

    @property
    def admin(self) -> str:
        """``"maint"``, ``"drain"`` or ``"ready"`` (what ``set server state`` would have set)."""
        if self.in_maintenance:
            return "maint"
        return "drain" if self.admin_state & DRAIN_FLAGS else "ready"

    @property
    def operational(self) -> str:
        return OP_STATES.get(self.op_state, str(self.op_state))

    def admin_flags(self) -> list[str]:
        names = ("FMAINT", "IMAINT", "CMAINT", "FDRAIN", "IDRAIN", "RMAINT", "HMAINT")
        return [name for bit, name in enumerate(names) if self.admin_state & (1 << bit)]


def parse_servers_state(text: str) -> list[ServerState]:
    """``show servers state`` output -> :class:`ServerState` list (by header name)."""
    header: list[str] = []
    states: list[ServerState] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            header = line.lstrip("#").split()
            continue
        if not header:
            continue  # the format version line ("1")
        row = dict(zip(header, line.split()))

        def num(key: str, row: dict[str, str] = row) -> int:
            value = row.get(key, "0")
            return int(value) if value.lstrip("-").isdigit() else 0

        states.append(
            ServerState(
                backend_id=num("be_id"),
                backend=row.get("be_name", ""),
                server_id=num("srv_id"),
                name=row.get("srv_name", ""),
                address=row.get("srv_addr", "-"),
                op_state=num("srv_op_state"),
                admin_state=num("srv_admin_state"),
                uweight=num("srv_uweight"),
                iweight=num("srv_iweight"),
                check_state=num("srv_check_state"),
                port=num("srv_port"),
                fqdn=row.get("srv_fqdn", "-"),
            )
        )
    return states


@dataclass(frozen=True)
class ProcInfo:
    """One process line of the master's ``show proc``."""

    pid: int
    kind: str  # "master" | "worker" | program name
    reloads: int
    uptime: str
    version: str


@dataclass(frozen=True)
class ProcStatus:
    """Parsed ``show proc``: the master, current workers, old workers, reload counters."""

    master: Optional[ProcInfo]
    workers: tuple[ProcInfo, ...]
    old_workers: tuple[ProcInfo, ...]
    reloads: int
    failed: int

    @property
    def worker_pids(self) -> frozenset[int]:
        return frozenset(w.pid for w in self.workers)


def parse_show_proc(text: str) -> ProcStatus:
    """Master CLI ``show proc`` (2.6 layout) -> :class:`ProcStatus`."""
    section = "master"
    master: Optional[ProcInfo] = None
    workers: list[ProcInfo] = []
    old: list[ProcInfo] = []
    reloads = failed = 0
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("master") and ">" in line:
            line = line.split(">", 1)[1].strip()  # a prompt glued to the first line
        if not line:
            continue
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            if title.startswith("<pid>"):
                section = "master"
            elif title == "workers":
                section = "workers"
            elif title == "old workers":
                section = "old"
            else:
                section = "other"
            continue
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid, kind = int(parts[0]), parts[1]
        rest = parts[2:]
        reload_count = int(rest[0]) if rest[0].isdigit() else 0
        if kind == "master" and "[failed:" in line:
            reloads = reload_count
            failed_text = line.split("[failed:", 1)[1].split("]", 1)[0].strip()
            failed = int(failed_text) if failed_text.isdigit() else 0
            rest = line.split("]", 1)[1].split()
        else:
            rest = rest[1:]
        info = ProcInfo(
            pid=pid,
            kind=kind,
            reloads=reload_count,
            uptime=rest[0] if rest else "",
            version=rest[1] if len(rest) > 1 else "",
        )
        if kind == "master":
            master = info
        elif section == "workers":
            workers.append(info)
        elif section == "old":
            old.append(info)
    return ProcStatus(master, tuple(workers), tuple(old), reloads, failed)


def split_prompt_answers(stream: str, count: int) -> list[str]:
    """Answers of ``prompt`` mode: the stream is ``"\\n> " + a1 + "\\n> " + a2 ...``."""
    parts = stream.split("\n> ")
    answers = parts[1 : count + 1]
    if len(answers) < count:
        raise ValueError(f"expected {count} answers, got {len(answers)}")
    return [a.strip("\n") for a in answers]


MASTER_PROMPT = re.compile(r"master(?:\[[^\]\n]*\])?> ")


def split_master_prompt_answers(stream: str, count: int) -> list[str]:
    """Answers of the master CLI's ``prompt`` mode: each follows a ``master> `` prompt (2.6
    shows ``master[ReloadFailed]> `` after a failed reload)."""
    parts = MASTER_PROMPT.split(stream)
    answers = parts[1 : count + 1]
    if len(answers) < count:
        raise ValueError(f"expected {count} answers, got {len(answers)}")
    return [a.strip("\n") for a in answers]


# ----------------------------------------------------------------------------- socket I/O


def _exchange(path: str, payload: bytes, timeout: float) -> str:
    """Send ``payload`` on a new UNIX connection, read until HAProxy closes it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the master CLI answers only once it sees the end
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        sock.close()


def _chunks(commands: Sequence[str], limit: int) -> list[list[str]]:
    """Consecutive groups of commands whose text stays under ``limit`` bytes (one at least)."""
    out: list[list[str]] = []
    size = limit + 1
    for command in commands:
        length = len(command.encode()) + 1
        if size + length > limit:
            out.append([])
            size = 0
        out[-1].append(command)
        size += length
    return out


def _check_command(command: str) -> str:
    if "\n" in command or "\r" in command or ";" in command:
        raise ValueError(f"one command without newlines or ';' expected: {command!r}")
    return command


class RuntimeAPI:
    """Client of HAProxy's admin stats socket (``level admin``)."""

    def __init__(
        self, socket_path: str, timeout: float = 5.0, master_socket: Optional[str] = None
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.master_socket = master_socket
        self.commands_sent = 0
        self.sent_via_master = 0  # commands the master CLI passed on (admin socket unreachable)

    def _exchange(self, payload: bytes, master_payload: bytes, command: str) -> tuple[str, bool]:
        """(answer stream, through the master?): the admin socket, else the master CLI.

        A deleted admin socket file (or one nobody listens on) is not fatal when the master
        socket is known: ``@1 <command>`` there reaches the current worker.
        """
        try:
            return _exchange(self.socket_path, payload, self.timeout), False
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if not self.master_socket:
                raise RuntimeUnavailable(command, f"{self.socket_path}: {exc}") from exc
            admin_error = exc
        except OSError as exc:
            raise RuntimeUnavailable(command, f"{self.socket_path}: {exc}") from exc
        try:
            stream = _exchange(self.master_socket, master_payload, self.timeout)
        except OSError as exc:
            raise RuntimeUnavailable(
                command, f"{self.socket_path}: {admin_error}; {self.master_socket}: {exc}"
            ) from exc
        log.debug("admin socket unreachable; used the master CLI", extra={"command": command})
        return stream, True

    # -- raw

    def execute(self, command: str, *, check: bool = True) -> str:
        """Run one command on its own connection; raise on HAProxy's error texts when ``check``."""
        _check_command(command)
        answer, via_master = self._exchange(
            command.encode() + b"\n", f"{TO_WORKER}{command}\n".encode(), command
        )
        self.commands_sent += 1
        self.sent_via_master += via_master
        answer = answer.strip("\n")
        if check and is_error_answer(answer):
            raise RuntimeAPIError(command, answer.strip())
        return answer

    def execute_many(self, commands: Sequence[str]) -> list[str]:
        """Run commands over few connections (prompt mode); answers in order, errors not raised.

        Commands go in chunks of at most :data:`BATCH_BYTES` per connection: HAProxy's CLI
        drops a connection whose pipelined input outgrows its buffer.
        """
        for command in commands:
            _check_command(command)
        answers: list[str] = []
        for chunk in _chunks(commands, BATCH_BYTES):
            answers.extend(self._execute_chunk(chunk))
        return answers

    def _execute_chunk(self, commands: Sequence[str]) -> list[str]:
        payload = "prompt\n" + "".join(c + "\n" for c in commands) + "quit\n"
        routed = "prompt\n" + "".join(f"{TO_WORKER}{c}\n" for c in commands) + "quit\n"
        stream, via_master = self._exchange(payload.encode(), routed.encode(), commands[0])
        split = split_master_prompt_answers if via_master else split_prompt_answers
        try:
            answers = split(stream, len(commands))
        except ValueError as exc:
            raise RuntimeUnavailable(commands[0], f"truncated batch answer: {exc}") from exc
        self.commands_sent += len(commands)
        self.sent_via_master += len(commands) if via_master else 0
        return answers

    def execute_checked(self, commands: Sequence[str]) -> list[str]:
        """:meth:`execute_many`, raising :class:`RuntimeAPIError` for the first refused command."""
        answers = self.execute_many(commands)
        for command, answer in zip(commands, answers):
            if is_error_answer(answer):
                raise RuntimeAPIError(command, answer.strip())
        return answers

    # -- reads

    def show_stat(self, proxy: str = "-1", types: int = -1) -> list[dict[str, str]]:
        return parse_csv_stat(self.execute(f"show stat {proxy} {types} -1"))

    def show_info(self) -> dict[str, str]:
        return parse_info(self.execute("show info"))

    def worker_pid(self) -> int:
        return int(self.show_info().get("Pid", "0") or 0)

    def show_servers_state(self, backend: Optional[str] = None) -> list[ServerState]:
        command = f"show servers state {backend}" if backend else "show servers state"
        return parse_servers_state(self.execute(command))

    def servers_state_text(self) -> str:
        """The raw dump, for the server-state file (ends with a newline)."""
        return self.execute("show servers state") + "\n"

    def show_backends(self) -> list[str]:
        lines = self.execute("show backend").splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]

    def server_sessions(self, backend: str) -> dict[str, int]:
        """Current sessions (``scur``) per server of ``backend``, from ``show stat``."""
        rows = self.show_stat("-1", 4)
        return {
            r["svname"]: int(r.get("scur") or 0)
            for r in rows
            if r.get("pxname") == backend and r.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def server_connections(self, backend: str, server: str) -> int:
        return self.server_sessions(backend).get(server, 0)

    # -- writes

    def add_server(
        self, backend: str, name: str, address: str, port: int, options: str = ""
    ) -> None:
        self.write(add_server_command(backend, name, address, port, options))

    def del_server(self, backend: str, name: str) -> None:
        self.write(f"del server {backend}/{name}")

    def set_server_state(self, backend: str, name: str, state: str) -> None:
        self.write(set_state_command(backend, name, state))

    def set_weight(self, backend: str, name: str, weight: int) -> None:
        self.write(f"set server {backend}/{name} weight {int(weight)}")

    def set_address(self, backend: str, name: str, address: str, port: int) -> None:
        self.write(f"set server {backend}/{name} addr {address} port {int(port)}")

    def enable_health(self, backend: str, name: str) -> None:
        self.write(f"enable health {backend}/{name}")

    def shutdown_sessions(self, backend: str, name: str) -> None:
        self.write(f"shutdown sessions server {backend}/{name}")

    def write(self, command: str) -> str:
        """Run a state-changing command; raise unless HAProxy answered with its success text."""
        answer = self.execute(command, check=False)
        if not write_succeeded(command, answer):
            raise RuntimeAPIError(command, answer.strip() or "no answer")
        return answer

    def write_many(self, commands: Sequence[str]) -> list[Optional[RuntimeAPIError]]:
        """Run writes over one connection; per command None (done) or the error HAProxy gave."""
        answers = self.execute_many(commands)
        return [
            None if write_succeeded(c, a) else RuntimeAPIError(c, a.strip() or "no answer")
            for c, a in zip(commands, answers)
        ]


# ----------------------------------------------------------------------------- master CLI


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    new_pid: Optional[int] = None
    old_workers: int = 0
    message: str = ""
    status: Optional[ProcStatus] = field(default=None, compare=False)

    def raise_for_failure(self) -> ReloadResult:
        """This result, or :class:`ReloadFailed` with HAProxy's reason when the reload failed."""
        if not self.ok:
            raise ReloadFailed(self.message or "reload failed")
        return self


class MasterCLI:
    """Client of the master CLI socket (``haproxy -W -S <path>``)."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def execute(self, command: str) -> str:
        _check_command(command)
        try:
            return _exchange(self.socket_path, command.encode() + b"\n", self.timeout)
        except OSError as exc:
            raise RuntimeUnavailable(command, f"{self.socket_path}: {exc}") from exc

    def show_proc(self) -> ProcStatus:
        return parse_show_proc(self.execute("show proc"))

    def show_proc_retrying(self, timeout: float) -> ProcStatus:
        """``show proc``, retried while the master re-execs (its socket drops for a moment)."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                status = self.show_proc()
                if status.master is not None:
                    return status
            except RuntimeUnavailable:
                if time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise RuntimeUnavailable("show proc", "the master answered without its own line")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def reload(self) -> None:
        """Ask for a reload (2.6: asynchronous; HAProxy closes the connection, no status)."""
        try:
            _exchange(self.socket_path, b"reload\n", self.timeout)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the master closing the socket as it re-execs is the normal answer
        except OSError as exc:
            raise RuntimeUnavailable("reload", f"{self.socket_path}: {exc}") from exc

    def reload_and_confirm(
        self,
        timeout: float = 30.0,
        before: Optional[ProcStatus] = None,
        alive: Optional[Callable[[], bool]] = None,
    ) -> ReloadResult:
        """Reload, then poll ``show proc`` until the reload counter moves, and judge the outcome.

        Success: a worker pid that was not there before. Failure: the ``failed`` counter went up
        (or stayed above zero with no new worker), the master exited (``alive`` says so), or
        nothing happened before ``timeout``.
        """
        previous = before or self.show_proc_retrying(timeout)
        self.reload()
        deadline = time.monotonic() + timeout
        delay = 0.005
        last: Optional[ProcStatus] = None
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                return ReloadResult(False, message="the haproxy master exited during the reload")
            try:
                last = self.show_proc()
            except RuntimeUnavailable:
                last = None
            if last is not None and last.master is not None and last.reloads > previous.reloads:
                result = judge_reload(previous, last)
                if result is not None:
                    return result
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return ReloadResult(
            ok=False,
            old_workers=len(last.old_workers) if last else 0,
            message=f"reload not confirmed within {timeout:.1f}s",
            status=last,
        )


def judge_reload(before: ProcStatus, after: ProcStatus) -> Optional[ReloadResult]:
    """Compare two ``show proc`` snapshots taken around one reload; None while undecided."""
    new_pids = sorted(after.worker_pids - before.worker_pids)
    if new_pids:
        return ReloadResult(True, new_pids[-1], len(after.old_workers), "", after)
    if after.failed > 0 and (after.failed > before.failed or after.reloads > before.reloads):
        return ReloadResult(
            False,
            None,
            len(after.old_workers),
            f"haproxy refused the new configuration (reload failed {after.failed} time(s)); "
            "the previous worker keeps serving",
            after,
        )
    return None


def add_server_command(backend: str, name: str, address: str, port: int, options: str = "") -> str:
    target = f"[{address}]:{int(port)}" if ":" in address else f"{address}:{int(port)}"
    return f"add server {backend}/{name} {target} {options}".rstrip()


def set_state_command(backend: str, name: str, state: str) -> str:
    if state not in ("ready", "drain", "maint"):
        raise ValueError(f"state must be ready, drain or maint, not {state!r}")
    return f"set server {backend}/{name} state {state}"


def write_succeeded(command: str, answer: str) -> bool:
    """Did HAProxy accept this write? Each command has its own success answer."""
    text = answer.strip()
    if command.startswith("add server "):
        return text.startswith(ADDED)
    if command.startswith("del server "):
        return text.startswith(DELETED)
    if " addr " in command and command.startswith("set server "):
        return "changed" in text or "no need to change" in text
    return text == ""
