"""Loading definition files: shapes (app, list, group, nested groups), sources, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marathon_bridge.definitions import load as load_module
from marathon_bridge.definitions import load_definitions, resolve_id
from marathon_bridge.definitions.load import MAX_FILE_BYTES
from marathon_bridge.errors import DefinitionError


@pytest.fixture(params=load_module._LOADERS, ids=lambda cls: cls.__name__)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a YAML test with each available loader (libyaml events, pure Python)."""
    monkeypatch.setattr(load_module, "_LOADERS", [request.param])


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        load_definitions(path)
    return caught.value


def test_single_json_app(tmp_path: Path) -> None:
    path = write(tmp_path, "web.json", '{"id": "/web", "cmd": "sleep 1"}')
    [app] = load_definitions(path)
    assert app.app == {"id": "/web", "cmd": "sleep 1"}
    assert app.source == str(path)


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_list_of_apps_keeps_order_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "apps.yaml", "- id: a\n  cmd: x\n- id: b\n  cmd: y\n")
    apps = load_definitions(path)
    assert [a.app["id"] for a in apps] == ["a", "b"]
    assert [a.source for a in apps] == [f"{path}#[0]", f"{path}#[1]"]


@pytest.mark.usefixtures("yaml_loader")
def test_yml_suffix_and_timestamps_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yml", "id: /x\ncmd: x\nversion: 2015-09-25T15:13:48.343Z\n")
    [app] = load_definitions(path)
    assert app.app["version"] == "2015-09-25T15:13:48.343Z"


def test_group_gives_absolute_ids_under_the_group(tmp_path: Path) -> None:
    group = {
        "id": "/g",
        "apps": [{"id": "web", "cmd": "x"}, {"id": "/g/abs", "cmd": "x"}],
        "groups": [
            {
                "id": "inner",
                "apps": [{"id": "db", "cmd": "x"}],
                "groups": [{"id": "/g/inner/deep", "apps": [{"id": "../up", "cmd": "x"}]}],
            }
        ],
    }
    path = write(tmp_path, "g.json", json.dumps(group))
    apps = load_definitions(path)
    assert [a.app["id"] for a in apps] == ["/g/web", "/g/abs", "/g/inner/db", "/g/inner/up"]
    assert [a.source.split("#")[1] for a in apps] == [
        "apps[0]",
        "apps[1]",
        "groups[0].apps[0]",
        "groups[0].groups[0].apps[0]",
    ]


def test_group_does_not_change_the_parsed_app_objects(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "id: /g\napps:\n  - id: web\n    cmd: x\n")
    [app] = load_definitions(path)
    assert app.app["id"] == "/g/web"


def test_saved_apps_listing_loads_as_root_group(tmp_path: Path) -> None:
    path = write(tmp_path, "apps.json", '{"apps": [{"id": "/a", "cmd": "x"}]}')
    assert [a.app["id"] for a in load_definitions(path)] == ["/a"]


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = (
        "base: &base\n  cpus: 0.1\n  mem: 32\n"
        "apps:\n  - <<: *base\n    id: a\n    cmd: x\n  - <<: *base\n    id: b\n    cmd: y\n"
    )
    apps = load_definitions(write(tmp_path, "g.yaml", text))
    assert [(a.app["id"], a.app["mem"]) for a in apps] == [("/a", 32), ("/b", 32)]


@pytest.mark.parametrize(
    ("raw", "base", "expected"),
    [
        ("web", "/g", "/g/web"),
        ("/a/../b", "/", "/b"),
        ("./x", "/g", "/g/x"),
        ("//a//b/", "/", "/a/b"),
        ("..", "/", "/"),
    ],
)
def test_resolve_id(raw: str, base: str, expected: str) -> None:
    assert resolve_id(raw, base) == expected


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.json")
    [issue] = error.issues
    assert "file not found" in issue.message
    assert issue.source.endswith("nope.json")


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.json").mkdir()
    assert "directory" in load_error(tmp_path / "d.json").issues[0].message


def test_unsupported_suffix(tmp_path: Path) -> None:
    assert "unsupported file type" in load_error(write(tmp_path, "a.txt", "{}")).issues[0].message


def test_unreadable_path(tmp_path: Path) -> None:
    parent = write(tmp_path, "a.json", "{}")
    error = load_error(parent / "b.json")  # a file used as a directory: stat fails
    assert "cannot read file" in error.issues[0].message


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{\n  "id": "/a",\n  "cmd": \n}\n')
    [issue] = load_error(path).issues
    assert issue.message.startswith("invalid JSON")
    assert (issue.source, issue.line, issue.column) == (str(path), 4, 1)
    assert issue.location == f"{path}:4:1"


@pytest.mark.usefixtures("yaml_loader")
def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "id: /a\ncmd: [unclosed\nmem: 1\n")
    [issue] = load_error(path).issues
    assert issue.message.startswith("invalid YAML")
    assert (issue.source, issue.line) == (str(path), 3)
    assert issue.location.startswith(f"{path}:3:")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.json", b'{\n"id": "/caf\xe9"}')
    [issue] = load_error(path).issues
    assert "not valid UTF-8" in issue.message
    assert issue.location == f"{path}:2:12"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.json", b'\xef\xbb\xbf{"id": "/a", "cmd": "x"}')
    assert load_definitions(path)[0].app["id"] == "/a"


@pytest.mark.parametrize(
    ("name", "text"), [("e.json", ""), ("e.yaml", "   \n"), ("c.yaml", "# only a comment\n")]
)
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    assert "empty" in load_error(write(tmp_path, name, text)).issues[0].message


@pytest.mark.parametrize(
    ("name", "text"), [("s.json", '"just a string"'), ("n.yaml", "42\n"), ("b.json", "true")]
)
def test_top_level_must_be_object_or_list(tmp_path: Path, name: str, text: str) -> None:
    assert "top level" in load_error(write(tmp_path, name, text)).issues[0].message


def test_list_items_must_be_objects(tmp_path: Path) -> None:
    assert "item [1]" in load_error(write(tmp_path, "l.json", '[{"id": "a"}, 3]')).issues[0].message


def test_group_apps_must_be_a_list(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "g.json", '{"id": "/g", "apps": {"a": 1}}'))
    assert "apps is an object, expected a list" in error.issues[0].message


@pytest.mark.usefixtures("yaml_loader")
def test_non_string_yaml_key_is_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "k.yaml", "id: /a\nlabels:\n  1: x\n"))
    assert "not a string" in error.issues[0].message


def test_yaml_binary_value_is_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "b.yaml", "id: /a\ncmd: !!binary aGVsbG8=\n"))
    assert "not valid JSON" in error.issues[0].message


def test_json_nan_is_refused(tmp_path: Path) -> None:
    assert (
        "not a JSON number"
        in load_error(write(tmp_path, "n.json", '{"cpus": NaN}')).issues[0].message
    )


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_unsafe_tags_are_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "x.yaml", "!!python/object/apply:os.system ['true']\n"))
    assert error.issues[0].message.startswith("invalid YAML")


# ----------------------------------------------------------------------------- safety


def test_file_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    assert "too big" in load_error(path).issues[0].message


def test_special_files_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    assert "not a regular file" in load_error(link).issues[0].message


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    error = load_error(write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n"))
    assert "alias" in error.issues[0].message


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "x: &x 1\nitems: [" + ", ".join(["*x"] * 150) + "]\n"
    assert (
        "too many YAML aliases" in load_error(write(tmp_path, "many.yaml", text)).issues[0].message
    )


@pytest.mark.usefixtures("yaml_loader")
def test_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    assert "recursive" in load_error(write(tmp_path, "r.yaml", "a: &a [*a]\n")).issues[0].message


@pytest.mark.parametrize("depth", [101, 5000, 200_000])
def test_deep_json_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    path = write(tmp_path, "deep.json", "[" * depth + "]" * depth)
    assert "deeper than" in load_error(path).issues[0].message


@pytest.mark.usefixtures("yaml_loader")
@pytest.mark.parametrize("depth", [101, 5000])
def test_deep_yaml_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    path = write(tmp_path, "deep.yaml", "[" * depth + "]" * depth)
    assert "deeper than" in load_error(path).issues[0].message


def test_nesting_at_the_limit_is_accepted(tmp_path: Path) -> None:
    inner = "[" * 98 + "]" * 98
    path = write(tmp_path, "ok.json", '{"id": "/a", "cmd": "x", "extra": ' + inner + "}")
    assert load_definitions(path)[0].app["id"] == "/a"


def test_aliased_values_are_not_shared_between_apps(tmp_path: Path) -> None:
    text = "labels: &l {team: a}\napps:\n"
    text += "  - {id: a, cmd: x, labels: *l}\n  - {id: b, cmd: y, labels: *l}\n"
    first, second = load_definitions(write(tmp_path, "g.yaml", text))
    first.app["labels"]["team"] = "changed"
    assert second.app["labels"] == {"team": "a"}


def test_both_yaml_loaders_exist_when_libyaml_is_installed() -> None:
    import yaml

    assert len(load_module._LOADERS) == (2 if yaml.__with_libyaml__ else 1)
