"""The running model's figures for /metrics: counted from plain data, once per (model, catalog)
pair, when read; and what a sidecar's /metrics shows of them."""

from __future__ import annotations

import pytest

from sidecar import model_figures as figures_module
from sidecar.catalog import (
    DRAIN,
    OUT,
    READY,
    Catalog,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
)
from sidecar.haproxy_model import BackendSpec, HAProxyModel, ServerSpec
from sidecar.metrics import SidecarMetrics
from sidecar.model_figures import NO_MODEL, ModelFigures, ServedModel, model_figures
from testkit.http import metric_sample


def server(name: str, state: str = "ready") -> ServerSpec:
    return ServerSpec(name, "10.0.0.1", 31000, f"/web.{name}", state=state)


def backend(name: str, *servers: ServerSpec) -> BackendSpec:
    return BackendSpec(
        name=name,
        app_id="/web",
        service_port=10000,
        mode="http",
        balance="roundrobin",
        servers=servers,
    )


def instance(task: str, state: str) -> Instance:
    return Instance(task, "10.0.0.1", 31000, state, "test", app_id="/web")


MODEL = HAProxyModel(
    backends=(backend("a", server("1"), server("2", "drain")), backend("b", server("3"))),
    skipped=(Skipped("/bad", "bad label"),),
    problems=(Problem("/web", "HAPROXY_0_X", "unknown"),) * 2,  # one problem, seen twice
)
SERVICE = Service(
    "/web:0",
    "/web",
    0,
    ServiceOptions(service_port=10000, bind_port=10000),
    (instance("t1", READY), instance("t2", DRAIN), instance("t3", OUT)),
)
CATALOG = Catalog({SERVICE.key: SERVICE})


def test_figures_count_servers_by_state_and_the_instances_out_of_rotation() -> None:
    assert model_figures(MODEL, CATALOG) == ModelFigures(
        services=2, ready=2, drain=1, skipped=1, problems=1, tasks_out=2
    )


def test_a_pair_is_counted_once_however_often_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[HAProxyModel] = []

    def counting(model: HAProxyModel, catalog: Catalog) -> ModelFigures:
        counted.append(model)
        return model_figures(model, catalog)

    served = ServedModel()
    assert served.figures() == NO_MODEL
    monkeypatch.setattr(figures_module, "model_figures", counting)
    served.set(MODEL, CATALOG)
    assert served.figures().ready == 2 and served.figures().ready == 2
    assert len(counted) == 1
    served.set(HAProxyModel(), Catalog({}))
    assert served.figures().services == 0
    assert len(counted) == 2


def test_metrics_show_the_last_recorded_model() -> None:
    metrics = SidecarMetrics()
    metrics.record_model(MODEL, CATALOG)
    text = metrics.render().decode()
    assert metric_sample(text, "marathon_sidecar_servers", {"state": "ready"}) == 2
    assert metric_sample(text, "marathon_sidecar_servers", {"state": "drain"}) == 1
    assert metric_sample(text, "marathon_sidecar_services") == 2
    assert metric_sample(text, "marathon_sidecar_tasks_out_of_rotation") == 2
