"""Security defaults the fault work found missing, now fixed: sandboxed templates, URL secrets."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from sidecar.haproxy_model import HAProxyModel
from sidecar.main import make_render_settings
from sidecar.render import render_config
from sidecar.settings import Settings

SECRET = "s3cret-file-content-7f3a"


@pytest.mark.parametrize(
    "expression",
    [
        "lipsum.__globals__.__builtins__.open(path).read()",
        "cycler.__init__.__globals__.os.path.exists(path)",
        "''.__class__.__mro__[1].__subclasses__()",
    ],
)
def test_a_user_template_cannot_reach_python_internals(tmp_path: Path, expression: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    template = f'{{% set path = "{secret}" %}}{{{{ {expression} }}}}'
    with pytest.raises(jinja2.exceptions.SecurityError):
        text = render_config(HAProxyModel(), make_render_settings(Settings()), template)
        assert SECRET not in text


def test_settings_repr_hides_credentials_in_marathon_urls() -> None:
    settings = Settings(marathon_urls=("http://bob:Pa55-w0rd@127.0.0.1:8080",), user="bob")
    assert "Pa55-w0rd" not in repr(settings)
