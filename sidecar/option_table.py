"""Settings from a table of options: flags > environment > YAML file > defaults.

The machinery ``marathon-sidecar`` and ``marathon-publisher`` share. A command describes every
option once (:class:`Option`: flag, environment variable, YAML key, parser, help) in an
:class:`OptionTable`; the argument parser, the environment lookup, the YAML keys and ``--help``
are derived from it. Values are parsed and checked here (the value parsers below), so a command
gets plain typed values; a bad value raises :class:`SettingsError` naming the option and where
the value came from (never the value of a secret).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from marathon_bridge import __version__
from marathon_bridge.errors import MarathonBridgeError

SECRET_OPTIONS = frozenset({"password", "token"})


class SettingsError(MarathonBridgeError):
    """A setting has a bad value (the message names the option and its source)."""


# --- value parsers: str (from a flag or the environment) or a YAML scalar -> typed value ---------

Parser = Callable[[Any], Any]


def text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    stripped = str(value).strip()
    if not stripped:
        raise ValueError("must not be empty")
    return stripped


def optional_text(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(value)


def secret(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)):
        raise ValueError("expected a string")
    return str(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(str(value).strip().rstrip("s"))
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if number != number or number < 0 or number > 86400 * 30:
        raise ValueError("expected a number of seconds between 0 and 30 days")
    return number


def positive_seconds(value: Any) -> float:
    number = seconds(value)
    if number <= 0:
        raise ValueError("must be more than 0 seconds")
    return number


def port(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a port number")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("expected a port number") from None
    if not 1 <= number <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return number


def optional_port(value: Any) -> Optional[int]:
    if value is None or value == "" or value == 0 or value == "0":
        return None
    return port(value)


def connections(value: Any) -> int:
    """A number of connections (``--maxconn``, ``--frontend-maxconn``): 1 to 10,000,000."""
    if isinstance(value, bool):
        raise ValueError("expected a number of connections")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("expected a number of connections") from None
    if not 1 <= number <= 10_000_000:
        raise ValueError("expected a number of connections from 1 to 10000000")
    return number


def url(value: Any) -> str:
    found = text(value).rstrip("/")
    scheme, sep, rest = found.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest:
        raise ValueError("expected an http:// or https:// URL")
    return found


def address(value: Any) -> str:
    found = text(value)
    if any(c.isspace() for c in found) or "/" in found:
        raise ValueError("expected an IP address or host name")
    return found.strip("[]")


def parse_listen(value: Any) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); port 0 picks a free one."""
    found = text(value)
    if found.startswith("["):
        host, sep, number_text = found[1:].partition("]:")
    else:
        host, sep, number_text = found.rpartition(":")
    if not sep or not host or (":" in host and not found.startswith("[")):
        raise ValueError("expected HOST:PORT")
    try:
        number = int(number_text)
    except ValueError:
        raise ValueError("expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError("the port must be from 0 to 65535")
    return host, number


def optional_listen(value: Any) -> Optional[str]:
    """``HOST:PORT`` checked and kept as text; empty means none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    host, number = parse_listen(value)
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def choice(choices: Sequence[str], upper: bool = False) -> Parser:
    def parse(value: Any) -> str:
        word = text(value)
        word = word.upper() if upper else word.lower()
        if word not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return word

    return parse


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting: its flag, env var, YAML key, parser and help."""

    name: str  # flag name without dashes; YAML key (dashes or underscores)
    target: str  # the settings field; see `split`
    parse: Parser
    help: str
    env: str = ""  # default: the table's prefix + NAME (filled in by OptionTable)
    repeatable: bool = False
    switch: bool = False  # a flag without a value
    metavar: str = ""
    split: tuple[str, ...] = ()  # the parsed tuple goes to these fields (e.g. host and port)

    @property
    def env_var(self) -> str:
        return self.env

    @property
    def flag(self) -> str:
        return "--" + self.name


class OptionTable:
    """Every option of one command, with its environment prefix, ``--config`` and ``--help``."""

    def __init__(
        self, prog: str, description: str, env_prefix: str, options: Sequence[Option]
    ) -> None:
        self.prog = prog
        self.description = description
        self.env_prefix = env_prefix
        self.config_env = env_prefix + "CONFIG"
        self.options: tuple[Option, ...] = tuple(
            replace(o, env=o.env or env_prefix + o.name.upper().replace("-", "_")) for o in options
        )
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"{prog}: an option is listed twice")

    def build_parser(self) -> argparse.ArgumentParser:
        """The argument parser; every default is left unset so a given flag can be told apart."""
        parser = argparse.ArgumentParser(
            prog=self.prog, description=self.description, argument_default=argparse.SUPPRESS
        )
        parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        parser.add_argument(
            "--config",
            metavar="FILE",
            help=f"YAML file with any of the options below as keys (env: {self.config_env})",
        )
        for option in self.options:
            helptext = f"{option.help} (env: {option.env_var})"
            if option.switch:
                parser.add_argument(
                    option.flag, dest=option.name, action="store_true", help=helptext
                )
            elif option.repeatable:
                parser.add_argument(
                    option.flag,
                    dest=option.name,
                    action="append",
                    metavar=option.metavar,
                    help=helptext,
                )
            else:
                parser.add_argument(
                    option.flag, dest=option.name, metavar=option.metavar or "VALUE", help=helptext
                )
        return parser

    def load(
        self,
        argv: Optional[Sequence[str]],
        environ: Mapping[str, str],
        extra_file_keys: frozenset[str] = frozenset(),
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Parse flags, env and the YAML file: (settings field -> value, extra YAML keys).

        ``config_file`` is among the values. ``--help``, ``--version`` and unknown flags exit
        through argparse (status 0 / 2); a bad value raises :class:`SettingsError`.
        """
        given = vars(self.build_parser().parse_args(list(argv) if argv is not None else []))
        config_path = given.pop("config", None) or environ.get(self.config_env) or None
        file_values = self.read_yaml(config_path, extra_file_keys) if config_path else {}
        values: dict[str, Any] = {"config_file": config_path}
        for option in self.options:
            found = _lookup(option, given, environ, file_values)
            if found is None:
                continue
            raw, source = found
            parsed = _parse_value(option, raw, source)
            if option.split:
                values.update(zip(option.split, parsed))
            else:
                values[option.target] = parsed
        extra = {key: file_values[key] for key in extra_file_keys if key in file_values}
        return values, extra

    def read_yaml(self, path: str, extra_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The file's options by name (dashes); an unknown key is an error naming it."""
        try:
            body = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"--config {path}: cannot read: {exc.strerror}") from None
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise SettingsError(f"--config {path}{where}: not valid YAML") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SettingsError(f"--config {path}: expected a mapping of option: value")
        known = {o.name for o in self.options} | extra_keys
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("_", "-")
            if name not in known:
                raise SettingsError(f"--config {path}: unknown option {str(key)[:60]!r}")
            out[name] = value
        return out


def _lookup(
    option: Option, given: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping
) -> Optional[tuple[Any, str]]:
    if option.name in given:
        return given[option.name], option.flag
    env_value = environ.get(option.env_var)
    if env_value is not None and (env_value != "" or option.name in SECRET_OPTIONS):
        if option.repeatable:
            return [v for v in env_value.split(",") if v.strip()], option.env_var
        return env_value, option.env_var
    if option.name in file_values:
        return file_values[option.name], f"{option.name} in the config file"
    return None


def _parse_value(option: Option, raw: Any, source: str) -> Any:
    try:
        if option.repeatable:
            items = raw if isinstance(raw, list) else str(raw).split(",")
            parsed = tuple(option.parse(item) for item in items if str(item).strip())
            if not parsed:
                raise ValueError("must not be empty")
            return parsed
        return option.parse(raw)
    except ValueError as exc:
        shown = "" if option.name in SECRET_OPTIONS else f" (got {str(raw)[:80]!r})"
        raise SettingsError(f"{source}: {exc}{shown}") from None
