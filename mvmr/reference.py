"""The recipe keys and the command line as Markdown, made from the pydantic models and the typer app themselves, so
that the documentation's reference pages cannot miss a key or a flag (``python -m mvmr.reference DIR`` writes
them; the test suite fails when the committed pages differ)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import BaseModel

from .config import Recipe


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("|", "or").replace("NoneType", "None")


def _cell(text: Optional[str]) -> str:
    """Text for one Markdown table cell: one line, its pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def _default(field) -> str:
    if field.default_factory is not None or isinstance(field.default, BaseModel):
        return "(a section)"
    return f"`{field.default!r}`"


def models() -> list[tuple[str, str, type[BaseModel], str]]:
    """(title, key prefix, model, description) of every documented section, in the recipe's order: the shared
    sections (a provider entry for ``providers``), then the built-in methods' own."""
    from .config import ProviderConfig
    from .registry import methods

    out = []
    for name, field in Recipe.model_fields.items():
        if name == "providers":
            out.append(("providers.NAME", "providers.NAME.", ProviderConfig, ProviderConfig.__doc__))
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.append((name, f"{name}.", field.annotation, field.annotation.__doc__))
    for method in ("mvmr", "mira"):
        cls = methods.get(method)
        out.append((cls.section, f"{cls.section}.", cls.Config,
                    f"The section of `method: {method}`. {cls.Config.__doc__ or ''}"))
    return out


def _leaves(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, pydantic field) of every key of ``model``, nested sections flattened."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaves(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name, field


def undocumented() -> list[str]:
    """Every recipe key without a description."""
    return [key for _, prefix, model, _ in models() for key, field in _leaves(model, prefix) if not field.description]


def _section(title: str, doc: Optional[str], model: type[BaseModel], prefix: str) -> list[str]:
    rows = [f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {_cell(field.description)} |"
            for key, field in _leaves(model, prefix)]
    return [f"## `{title}`", "", *([" ".join(doc.split()), ""] if doc else []),
            "| key | type | default | what it does |", "|---|---|---|---|", *rows, ""]


def recipe_page() -> str:
    """Every recipe key: the shared sections, then each built-in method's own section."""
    out = ["# Recipe keys", "",
           "Generated from mvmr's pydantic models (`python -m mvmr.reference docs/reference`): every key a recipe "
           "accepts, its type, default and meaning. An unknown key is an error, and so is another method's section.",
           "", "## `method`", "", Recipe.model_fields["method"].description, ""]
    for title, prefix, model, doc in models():
        out += _section(title, doc, model, prefix)
    return "\n".join(out).rstrip() + "\n"


def _commands(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """The command and, for a group, every subcommand below it, depth first."""
    yield path, group
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(command, path + [name])


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
                out.append(f"| {names} | {_cell(getattr(p, 'help', None))} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


PAGES = {"recipe.md": recipe_page, "cli.md": cli_page}


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/reference")
    missing = undocumented()
    if missing:
        print(f"recipe keys without a description: {', '.join(missing)}", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        (target / name).write_text(page())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
