"""``haproxy -c`` on rendered candidates, and finding the apps behind a refusal.

When HAProxy refuses a config, the running one stays; :class:`Validator` finds the apps behind
the error lines from ``haproxy -c``'s messages (line numbers and proxy names mapped to the
sections of the rendered text: :func:`blame_apps`, pure), drops them and checks the rest; halving
the apps (bisection) is the fallback when the messages cannot be mapped. Every check costs one
``haproxy -c`` (0.2-0.5 s at a few thousand services), so a budget bounds them.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple, Optional

from sidecar.catalog import Skipped
from sidecar.haproxy_model import HAProxyModel

from .config_file import ConfigFile
from .model_subsets import apps_of, only_apps, without_apps
from .results import ApplyCounters

log = logging.getLogger(__name__)

MAX_MAPPING_ROUNDS = 5
MAX_VALIDATIONS = 48
Renderer = Callable[[HAProxyModel], str]
Effective = Callable[[HAProxyModel], HAProxyModel]

_SECTION_KINDS = (
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
)
_SUMMARIES = (
    "Error(s) found in configuration file",
    "Fatal errors found in configuration",
    "Failed to initialize server(s) addr",
    "Some warnings were found",
)
_LINE_REF = re.compile(r"\[[^\]\s]*:(\d+)\]")
_PROXY_REF = re.compile(r"(?:backend|frontend|proxy|listen)\s+'([^']+)'", re.IGNORECASE)
_SERVER_REF = re.compile(r"'server ([^/' ]+)/")
_FOR_PROXY = re.compile(r"for (?:frontend|backend|proxy|listen) ([^\s:'\"]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    first_line: int  # 1-based line of the section keyword
    kind: str  # "global" | "defaults" | "frontend" | "backend" | "listen" | ...
    name: str


class Blame(NamedTuple):
    """The apps ``haproxy -c`` messages point at, and whether every error line was mapped."""

    apps: set[str]
    complete: bool


class Validated(NamedTuple):
    """What :meth:`Validator.validated` accepted: ``candidate`` is None when nothing was."""

    model: Optional[HAProxyModel]
    skipped: tuple[Skipped, ...]
    text: Optional[str]
    candidate: Optional[str]  # a checked file next to the config, to rename into place
    error: str  # HAProxy's first complaint (the whole text) when something was refused
    validations: int


# --- mapping messages to apps (pure) ----------------------------------------------------------


def config_sections(text: str) -> list[Section]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line[0].isspace() or line.startswith("#"):
            continue
        words = line.split()
        if words and words[0] in _SECTION_KINDS:
            out.append(Section(number, words[0], words[1] if len(words) > 1 else ""))
    return out


def section_at(sections: Sequence[Section], line: int) -> Optional[Section]:
    found = None
    for section in sections:
        if section.first_line > line:
            break
        found = section
    return found


def proxy_apps(model: HAProxyModel) -> dict[str, set[str]]:
    """Section name -> the app ids it serves."""
    by_backend = {b.name: b.app_id for b in model.backends}
    out: dict[str, set[str]] = {name: {app} for name, app in by_backend.items()}
    for fe in model.frontends:
        names = [r.backend for r in fe.routes] + (
            [fe.default_backend] if fe.default_backend else []
        )
        out.setdefault(fe.name, set()).update(by_backend[n] for n in names if n in by_backend)
    return out


def blame_apps(model: HAProxyModel, text: str, errors: str) -> Blame:
    """Map ``haproxy -c`` messages to app ids."""
    sections = config_sections(text)
    lines = text.splitlines()
    apps_by_proxy = proxy_apps(model)
    backend_app = {b.name: b.app_id for b in model.backends}
    blamed: set[str] = set()
    complete = True
    for message in errors.splitlines():
        if "[ALERT]" not in message:
            continue
        found: set[str] = set()
        for ref in _LINE_REF.findall(message):
            number = int(ref)
            section = section_at(sections, number)
            if section is None or section.name not in apps_by_proxy:
                continue
            found |= apps_by_proxy[section.name]
            if section.kind == "frontend" and 0 < number <= len(lines):
                words = set(re.split(r"[\s,()]+", lines[number - 1]))
                named = {backend_app[w] for w in words if w in backend_app}
                if named:
                    found = (found - apps_by_proxy[section.name]) | named
        for pattern in (_PROXY_REF, _SERVER_REF, _FOR_PROXY):
            for name in pattern.findall(message):
                found |= apps_by_proxy.get(name, set())
        if found:
            blamed |= found
        elif not is_summary(message):
            complete = False
    return Blame(blamed, complete)


def is_summary(message: str) -> bool:
    return any(s in message for s in _SUMMARIES)


def first_alert(error: str) -> str:
    """HAProxy's first complaint, without its prefix and the (temporary) file name and line."""
    for line in error.splitlines():
        if "[ALERT]" in line and not is_summary(line):
            text = line.split(" : config : ", 1)[-1]
            if "] : " in text:
                text = text.rsplit("] : ", 1)[-1]
            return text.strip()[:300]
    return error.strip().splitlines()[0][:300] if error.strip() else "invalid configuration"


# --- checking candidates ----------------------------------------------------------------------


@dataclass
class Budget:
    limit: int
    used: int = 0

    def left(self) -> int:
        return self.limit - self.used


class Validator:
    """Renders models, checks them with ``haproxy -c`` and drops the apps HAProxy refuses."""

    def __init__(
        self,
        render: Renderer,
        config: ConfigFile,
        validate_cmd: Sequence[str],
        counters: ApplyCounters,
    ) -> None:
        self.render = render
        self.config = config
        self.validate_cmd = list(validate_cmd)
        self.counters = counters

    def validated(self, model: HAProxyModel, effective: Effective) -> Validated:
        """Render and check ``model`` (through ``effective``: draining servers kept), dropping
        the apps HAProxy refuses."""
        budget = Budget(MAX_VALIDATIONS)
        text = self.render(effective(model))
        candidate, error = self.check_text(text, budget)
        if candidate is not None:
            return Validated(model, (), text, candidate, "", budget.used)
        first_error = error
        log.warning("haproxy refused the config", extra={"error": error[:2000]})
        attempt = _Attempt(model, text, error, {})
        for _ in range(MAX_MAPPING_ROUNDS):
            blamed = blame_apps(attempt.model, attempt.text, attempt.error).apps
            blamed &= set(apps_of(attempt.model))
            if not blamed:
                break
            found = self._without(attempt, blamed, effective, budget)
            if found is not None:
                return self._accepted(model, attempt.reasons, found, budget)
        bad = self._bisect(attempt.model, effective, budget)
        if bad:
            found = self._without(attempt, bad, effective, budget)
            if found is not None:
                return self._accepted(model, attempt.reasons, found, budget)
        self.counters.last_error = first_error
        return Validated(None, (), None, None, first_error, budget.used)

    def install(self, text: str) -> str:
        """Check ``text`` and rename it into place (no reload); "" or HAProxy's complaint."""
        candidate, error = self.check_text(text, Budget(1))
        if candidate is None:
            self.counters.validation_failures += 1
            self.counters.last_error = error
            return error
        self.config.install(candidate)
        self.counters.config_writes += 1
        return ""

    def check_text(self, text: str, budget: Budget) -> tuple[Optional[str], str]:
        """Write a candidate and check it: (candidate path, "") or (None, error text)."""
        if budget.left() <= 0:
            return None, "validation budget exhausted"
        budget.used += 1
        self.counters.validations += 1
        return self.candidate_for(text)

    def candidate_for(self, text: str) -> tuple[Optional[str], str]:
        """A checked candidate of ``text`` (nothing counted: any thread may call it)."""
        candidate = self.config.write_candidate(text)
        error = self._haproxy_check(candidate)
        if not error:
            return candidate, ""
        self.config.discard(candidate)
        return None, error

    def _without(
        self, attempt: _Attempt, bad: set[str], effective: Effective, budget: Budget
    ) -> Optional[tuple[str, str]]:
        """Leave ``bad`` out of the attempt and check again: (text, candidate) when accepted."""
        attempt.reasons.update(dict.fromkeys(bad, first_alert(attempt.error)))
        attempt.model = without_apps(attempt.model, bad)
        attempt.text = self.render(effective(attempt.model))
        candidate, attempt.error = self.check_text(attempt.text, budget)
        return None if candidate is None else (attempt.text, candidate)

    def _accepted(
        self,
        model: HAProxyModel,
        reasons: dict[str, str],
        found: tuple[str, str],
        budget: Budget,
    ) -> Validated:
        skipped = tuple(
            Skipped(app_id=app, reason="haproxy refused its configuration: " + reason)
            for app, reason in sorted(reasons.items())
        )
        accepted = without_apps(model, reasons)
        accepted = replace(accepted, skipped=accepted.skipped + skipped)
        self.counters.skipped_apps += len(skipped)
        log.warning("apps left out of the config", extra={"apps": sorted(reasons)})
        text, candidate = found
        return Validated(accepted, skipped, text, candidate, "", budget.used)

    def _bisect(self, model: HAProxyModel, effective: Effective, budget: Budget) -> set[str]:
        """Apps whose config HAProxy refuses, by halving (each probe is one ``haproxy -c``)."""
        apps = apps_of(model)
        if not apps or not self._probe(only_apps(model, []), effective, budget):
            return set()  # even without apps the config fails: not an app's fault

        def search(group: list[str]) -> set[str]:
            if len(group) == 1:
                return set(group)
            half = len(group) // 2
            found: set[str] = set()
            for part in (group[:half], group[half:]):
                if budget.left() <= 0:
                    return found
                if not self._probe(only_apps(model, part), effective, budget):
                    found |= search(part)
            return found

        return search(apps)

    def _probe(self, model: HAProxyModel, effective: Effective, budget: Budget) -> bool:
        candidate, _ = self.check_text(self.render(effective(model)), budget)
        if candidate is not None:
            self.config.discard(candidate)
            return True
        return False

    def _haproxy_check(self, path: str) -> str:
        """``haproxy -c`` on ``path``: "" when it passes, else its output."""
        try:
            proc = subprocess.run(
                [*self.validate_cmd, path], capture_output=True, timeout=120, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot run {self.validate_cmd[0]}: {exc}"
        if proc.returncode != 0:
            output = (proc.stderr + proc.stdout).decode("utf-8", "replace")
            return output.strip() or f"exit status {proc.returncode}"
        return ""


class _Attempt:
    """The model being narrowed down, its text, HAProxy's last complaint, who was dropped."""

    def __init__(self, model: HAProxyModel, text: str, error: str, reasons: dict[str, str]):
        self.model = model
        self.text = text
        self.error = error
        self.reasons = reasons  # app id -> the message that condemned it
