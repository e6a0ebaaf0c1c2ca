"""A user template (``--template``) cannot read files: no include, import or extends of a path
outside (or inside) its directory works, and a failed attempt shows nothing of the file.

``sidecar.main.make_applier`` reads the template file once and renders the text
(``jinja2.Environment.from_string`` in :func:`sidecar.render.render_config`): the environment has
no loader, so every ``include``/``import``/``extends`` fails.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from sidecar.haproxy_model import HAProxyModel
from sidecar.main import make_applier, make_haproxy, make_render_settings
from sidecar.render import render_config
from sidecar.settings import Settings

SECRET = "s3cret-file-content-7f3a"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """``tmp/secret.txt`` outside, ``tmp/templates/`` for the template, a sibling inside."""
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "part.j2").write_text(SECRET + "\n")
    return templates


def statements(templates: Path) -> list[str]:
    outside = templates.parent / "secret.txt"
    return [
        '{% include "../secret.txt" %}',
        f'{{% include "{outside}" %}}',
        '{% include "part.j2" %}',
        '{% import "../secret.txt" as x %}',
        f'{{% from "{outside}" import y %}}',
        '{% extends "../secret.txt" %}',
    ]


def test_include_import_and_extends_fail_in_a_user_template(layout: Path) -> None:
    for statement in statements(layout):
        with pytest.raises((jinja2.TemplateError, TypeError)) as failure:
            render_config(HAProxyModel(), make_render_settings(Settings()), statement)
        assert SECRET not in str(failure.value), statement


def test_the_daemon_renders_a_template_file_without_file_access(
    layout: Path, tmp_path: Path
) -> None:
    template = layout / "haproxy.cfg.j2"
    template.write_text('global\n{% include "../secret.txt" %}\n')
    settings = Settings(
        marathon_urls=("http://127.0.0.1:1",),
        state_dir=str(tmp_path / "state"),
        template=str(template),
    )
    render_settings = make_render_settings(settings)
    haproxy = make_haproxy(settings, render_settings)  # built, never started
    applier = make_applier(settings, haproxy, render_settings)
    with pytest.raises((jinja2.TemplateError, TypeError)) as failure:
        applier.render(HAProxyModel())
    assert SECRET not in str(failure.value)
