"""The documentation in docs/ names what the code does: every event type and field, refusal,
obligation kind, route, search attribute, environment variable, command and policy key the code
defines is on its page, and every link between pages resolves. A name added to the code without
its line in the docs fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mispers.api.app import create_app
from mispers.cli import app as cli
from mispers.config import Settings
from mispers.domain.events import EVENT_MODELS
from mispers.domain.messages import CHILD_RECORD_WORKFLOW, EPISODE_WORKFLOW, TASK_QUEUE
from mispers.domain.types import ObligationKind
from mispers.engine.search_attributes import CLI_TYPES
from mispers.policy.loader import default_policy_path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONTRACT = (DOCS / "contract.md").read_text(encoding="utf-8")
RULES = (DOCS / "rules.md").read_text(encoding="utf-8")


def code(name: str) -> str:
    return f"`{name}`"


def field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of a model and of the models nested in it."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for nested in nested_models(info.annotation):
            names |= field_names(nested)
    return names


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found += nested_models(arg)
    return found


def table_row(text: str, first_cell: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"{first_cell}: {len(rows)} rows in the table"
    return rows[0]


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_every_event_type_and_field_is_in_the_contract(event_type: str) -> None:
    row = table_row(CONTRACT, code(event_type))
    data_model = EVENT_MODELS[event_type].model_fields["data"].annotation
    assert isinstance(data_model, type) and issubclass(data_model, BaseModel)
    missing = sorted(n for n in field_names(data_model) if code(n) not in row)
    assert missing == [], f"{event_type}: fields missing from docs/contract.md"


def test_every_refusal_code_is_in_the_contract() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "mispers").rglob("*.py"))
    codes = set(re.findall(r'refuse\(\s*"([a-z_]+)"', source))
    assert len(codes) >= 10
    assert sorted(c for c in codes if code(c) not in CONTRACT) == []


@pytest.mark.parametrize("kind", list(ObligationKind))
def test_every_obligation_kind_is_in_the_contract_and_the_rules(kind: ObligationKind) -> None:
    assert code(kind.value) in CONTRACT
    assert code(kind.value) in RULES
    assert f"`obligations.{kind.value}`" in RULES or kind is ObligationKind.RISK_REVIEW


def test_every_documented_route_is_in_the_contract(tmp_path: Path) -> None:
    paths = create_app(Settings(data_dir=tmp_path)).openapi()["paths"]
    assert "/v1/events" in paths
    assert sorted(p for p in paths if p not in CONTRACT) == []


def test_the_temporal_surface_is_in_the_contract() -> None:
    for name in (EPISODE_WORKFLOW, CHILD_RECORD_WORKFLOW, TASK_QUEUE, *CLI_TYPES):
        assert code(name) in CONTRACT, name
    for name, kind in CLI_TYPES.items():
        assert f"`{name}` ({kind})" in CONTRACT


def test_every_environment_variable_is_in_the_contract() -> None:
    sources = [*(ROOT / "mispers").rglob("*.py"), *(ROOT / "activities").rglob("*.py")]
    sources += [ROOT / "worker.py", *(ROOT / "workflows").rglob("*.py")]
    names = {
        name
        for path in sources
        for name in re.findall(
            r"MISPERS_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])", path.read_text(encoding="utf-8")
        )
    }
    assert len(names) >= 30
    assert sorted(n for n in names if code(n) not in CONTRACT) == []


def test_every_command_is_in_the_contract() -> None:
    section = CONTRACT.split("## Command line", 1)[1]
    commands = [c.name or c.callback.__name__.replace("_", "-") for c in cli.registered_commands]  # type: ignore[union-attr]
    for group in cli.registered_groups:
        assert group.typer_instance is not None
        commands += [
            f"{group.name} {c.name or c.callback.__name__.replace('_', '-')}"  # type: ignore[union-attr]
            for c in group.typer_instance.registered_commands
        ]
    assert len(commands) >= 12
    assert sorted(c for c in commands if c not in section) == []


def flat_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("due",):
            keys += flat_keys(value, f"{dotted}.")
        else:
            keys.append(dotted)
    return keys


def test_every_policy_key_is_in_the_rules() -> None:
    """Tables of figures per level or per kind are named as a table; everything else by key."""
    policy = tomllib.loads(default_policy_path().read_text(encoding="utf-8"))
    wanted = set()
    for key in flat_keys(policy):
        head = key.split(".")[0]
        if head in ("escalation_interval", "risk_reviews"):
            wanted.add(head)
        elif head == "obligations":
            wanted.add(".".join(key.split(".")[:2]))
        else:
            wanted.add(key)
    assert len(wanted) >= 20
    assert sorted(k for k in wanted if code(k) not in RULES and f"`{k} " not in RULES) == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name
)
def test_every_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path) if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = {
                re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", resolved.read_text(encoding="utf-8"), re.M)
            }
            if anchor not in headings:
                broken.append(target)
    assert broken == []


def test_the_readme_links_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in ("docs/README.md", "docs/contract.md", "docs/rules.md", "docs/architecture.md"):
        assert f"]({page})" in readme
