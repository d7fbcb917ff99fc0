"""Reading a force policy file: the only I/O of the policy package."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from mispers.policy.model import Policy

DEFAULT_POLICY_NAME = "default.toml"


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the file, the field and the rule."""


def default_policy_path() -> Path:
    return Path(str(resources.files("mispers.policy").joinpath(DEFAULT_POLICY_NAME)))


def load_policy(path: str | Path | None = None) -> Policy:
    source = Path(path) if path else default_policy_path()
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{source}: policy file not found") from None
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read policy file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"{source}: {problems}") from None
