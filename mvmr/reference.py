"""The recipe keys and the command line as Markdown, made from the pydantic models and the typer app themselves, so
that the documentation's reference pages cannot miss a key or a flag (``python -m mvmr.reference DIR`` writes
them; the test suite fails when the committed pages differ)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel

from .config import Recipe


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("|", "or").replace("NoneType", "None")


def _default(field) -> str:
    if field.default_factory is not None:
        return "(a section)"
    value = field.default
    if isinstance(value, BaseModel):
        return "(a section)"
    return f"`{value!r}`" if value not in ({}, None) else ("`{}`" if value == {} else "`None`")


def models() -> list[tuple[str, type[BaseModel]]]:
    """The documented models with their key prefixes: the shared sections, a provider entry, the methods' own."""
    from .config import ProviderConfig
    from .registry import methods

    out = [(f"{name}.", f.annotation) for name, f in Recipe.model_fields.items()
           if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    out.append(("providers.NAME.", ProviderConfig))
    for method in ("mvmr", "mira"):
        cls = methods.get(method)
        out.append((f"{cls.section}.", cls.Config))
    return out


def undocumented(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key of ``model`` (recursively) without a description."""
    for name, field in model.model_fields.items():
        sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) \
            else None
        if sub is None and not field.description:
            yield prefix + name
        if sub is not None:
            yield from undocumented(sub, f"{prefix}{name}.")


def _rows(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) \
            else None
        if sub is not None:
            yield from _rows(sub, f"{prefix}{name}.")
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        kind = _type_name(field.annotation)
        yield f"| `{prefix}{name}` | {kind} | {_default(field)} | {description} |"


def _section(title: str, doc: str, model: type[BaseModel], prefix: str) -> list[str]:
    return [f"## `{title}`", "", *([" ".join(doc.split()), ""] if doc else []),
            "| key | type | default | what it does |", "|---|---|---|---|", *_rows(model, prefix), ""]


def recipe_page() -> str:
    """Every recipe key: the shared sections, then each built-in method's own section."""
    from .config import ProviderConfig
    from .registry import methods

    out = ["# Recipe keys", "",
           "Generated from mvmr's pydantic models (`python -m mvmr.reference docs/reference`): every key a recipe "
           "accepts, its type, default and meaning. An unknown key is an error, and so is another method's section.",
           ""]
    for name, field in Recipe.model_fields.items():
        if name == "method":
            out += ["## `method`", "", field.description or "", ""]
            continue
        if name == "providers":
            out += _section("providers.NAME", ProviderConfig.__doc__, ProviderConfig, "providers.NAME.")
            continue
        model = field.annotation
        out += _section(name, model.__doc__, model, f"{name}.")
    for method in ("mvmr", "mira"):
        cls = methods.get(method)
        out += _section(cls.section, f"The section of `method: {method}`. {cls.Config.__doc__ or ''}", cls.Config,
                        f"{cls.section}.")
    return "\n".join(out).rstrip() + "\n"


def _commands(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    commands = getattr(group, "commands", None)
    if commands is None:
        yield path, group
        return
    yield path, group
    for name in sorted(commands):
        yield from _commands(commands[name], path + [name])


def cli_page() -> str:
    """Every command and option of ``mvmr``, from the typer app's own help."""
    import typer

    from .cli import app

    root = typer.main.get_command(app)
    out = ["# Command line", "", "Generated from the typer app (`python -m mvmr.reference docs/reference`). "
           "Every command prints the same with `--help`.", ""]
    for path, command in _commands(root, ["mvmr"]):
        out += [f"## `{' '.join(path)}`", "", " ".join((command.help or "").split()), ""]
        params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
        if params and not getattr(command, "commands", None):
            out += ["| argument / option | what it does |", "|---|---|"]
            for p in params:
                is_option = p.param_type_name == "option"
                names = ", ".join(f"`{o}`" for o in p.opts + list(p.secondary_opts)) if is_option \
                    else f"`{p.name.upper()}`"
                text = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
                out.append(f"| {names} | {text} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


PAGES = {"recipe.md": recipe_page, "cli.md": cli_page}


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/reference")
    missing = [k for prefix, model in models() for k in undocumented(model, prefix)]
    if missing:
        print(f"recipe keys without a description: {', '.join(missing)}", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        (target / name).write_text(page())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
