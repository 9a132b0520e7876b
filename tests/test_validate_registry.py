"""critdiff_ref.validate.registry: one table of third-party samplers feeds the command line's default list and
adapter choices, the coverage table, the documented orders the runners carry, and the pytest plugin (THEORY 2)."""

from __future__ import annotations

import argparse
import warnings

import pytest

from critdiff_ref import GaussianField
from critdiff_ref.validate import cli, coverage, pytest_plugin, registry
from critdiff_ref.validate.mutants.schedulers import DDIMLikeScheduler
from critdiff_ref.validate.registry import Adapter, DefaultConfig, SchedulerEntry, make_runner
from critdiff_ref.validate.runners.generator import generator_runner

pytestmark = pytest.mark.filterwarnings("ignore")


class NewDDIMScheduler(DDIMLikeScheduler):
    """A diffusers-like DDIM (order 1) under a name the registry does not know yet."""


@pytest.fixture
def registered(monkeypatch):
    """NewDDIMScheduler exported by diffusers and given ONE registry entry (documented order 1, one default config)."""
    diffusers = pytest.importorskip("diffusers")
    monkeypatch.setattr(diffusers, "NewDDIMScheduler", NewDDIMScheduler, raising=False)
    monkeypatch.setitem(registry.DIFFUSERS, "NewDDIMScheduler", SchedulerEntry("discrete", 1.0, (DefaultConfig(),)))
    return "NewDDIMScheduler"


def test_an_unregistered_class_has_no_documented_order_and_no_default():
    assert make_runner(NewDDIMScheduler, "diffusers").order is None
    assert "NewDDIMScheduler" not in [entry[0] for entry in registry.default_diffusers()]


def test_one_registry_entry_reaches_the_cli_default_list(registered):
    assert (registered, None) in registry.default_diffusers()
    runners, note = cli.default_runners()
    assert registered in [r.name for r in runners], note


def test_one_registry_entry_reaches_the_order_table(registered):
    assert registry.diffusers_orders()[registered] == 1.0
    assert make_runner(NewDDIMScheduler, "diffusers").order == 1.0


def test_one_registry_entry_reaches_the_coverage_table(registered):
    assert registered in registry.catalogued_classes()
    rows = coverage.coverage_rows([registered], field=GaussianField(4, 1, 0.0), steps=(50, 100))
    assert rows[0]["status"] == "validated" and rows[0]["documented_order"] == 1.0, rows
    line = next(t for t in coverage.format_coverage_table(rows, (50, 100)).splitlines() if t.startswith(f"| {registered} |"))
    assert line.startswith(f"| {registered} | default | pass |") and " / 1 |" in line, line


def test_a_registry_reason_reaches_the_coverage_table(registered, monkeypatch):
    monkeypatch.setitem(registry.DIFFUSERS, registered, SchedulerEntry(None, not_applicable="a planted reason"))
    rows = coverage.coverage_rows([registered])
    assert rows == [{"scheduler": registered, "variant": "", "status": "not applicable", "reason": "a planted reason"}]


def test_one_adapter_entry_reaches_the_cli_and_the_pytest_plugin(monkeypatch):
    monkeypatch.setitem(registry.ADAPTER_TABLE, "my-generator", Adapter(generator_runner))
    sub = argparse.ArgumentParser().add_subparsers()
    action = next(a for a in cli.add_validate_parser(sub)._actions if "--adapter" in a.option_strings)
    assert "my-generator" in action.choices

    class Group:
        options: dict = {}

        def addoption(self, name, **kw):
            self.options[name] = kw

    class Parser:
        group = Group()

        def getgroup(self, *args, **kwargs):
            return self.group

    parser = Parser()
    pytest_plugin.pytest_addoption(parser)
    assert list(parser.group.options["--critdiff-adapter"]["choices"]) == list(registry.ADAPTER_TABLE)
    assert make_runner(lambda n, generator: None, "my-generator").adapter == "generator"


def test_the_plugin_offers_every_adapter_the_command_line_offers():
    sub = argparse.ArgumentParser().add_subparsers()
    action = next(a for a in cli.add_validate_parser(sub)._actions if "--adapter" in a.option_strings)
    assert "velocity" in action.choices and tuple(action.choices) == registry.adapter_names()


def test_entries_are_checked_on_construction():
    with pytest.raises(ValueError, match="family"):
        SchedulerEntry("ode")
    with pytest.raises(ValueError, match="not_applicable"):
        SchedulerEntry(None)
    with pytest.raises(ValueError, match="kind"):
        SchedulerEntry("consistency")
    with pytest.raises(ValueError, match="order"):
        SchedulerEntry("discrete", -1.0)


def test_registered_families_match_what_the_classes_look_like():
    """A covered "discrete" class has alphas_cumprod or EDM preconditioning; a "flow" class has no alphas_cumprod
    (the flow runner's premise); a consistency class is found by its entry."""
    diffusers = pytest.importorskip("diffusers")
    for name, entry in registry.DIFFUSERS.items():
        if entry.family is None or entry.gap:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instance = getattr(diffusers, name)()
        if entry.family == "discrete":
            assert hasattr(instance, "alphas_cumprod") or hasattr(instance, "precondition_outputs"), name
        elif entry.family == "flow":
            assert registry.is_flow_scheduler(instance), name
        else:
            assert registry.consistency_kind(instance) == entry.kind, name
