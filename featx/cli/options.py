"""Options several commands share, declared once; choices and ranges come from the library's own tables.

Two rules hold for every command (FeatxCommand): a number option's type is `Constrained`,
built from the library's declared constraint (featx.constraints), so a bad number is
refused at parsing with the range the library itself enforces; and a text option or
argument given as an empty string is refused, never read as "not given".
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from featx.config import PROTOCOLS
from featx.constraints import COUNT, NON_NEGATIVE, ByteSize, Constraint, Interval, Options
from featx.data.readers import FORMATS
from featx.errors import ParameterError
from featx.options import ModelOptions, ReadOptions, RunOptions, StoreOptions, VectorOptions

if TYPE_CHECKING:
    from featx.data import Source


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# The option groups `featx extract` makes its flags from (each field with a help line).
EXTRACT_GROUPS = (ModelOptions, VectorOptions, StoreOptions, RunOptions, ReadOptions)


class Constrained(click.ParamType[Any, Any]):
    """A number (or size) option whose range is a library constraint (`constraint`, read by tests too)."""

    def __init__(self, constraint: Constraint) -> None:
        if not isinstance(constraint, (Interval, ByteSize)):
            raise TypeError(f"a number option needs an Interval or a ByteSize, not {constraint!r}")
        self.constraint: Interval | ByteSize = constraint
        self.name = "size" if isinstance(constraint, ByteSize) else "integer" if constraint.type is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or isinstance(self.constraint, ByteSize):  # a size reads its own units
            number: Any = value
        else:
            try:
                number = int(value) if self.constraint.type is int else float(value)
            except ValueError:
                self.fail(f"{value!r} is not {'an integer' if self.constraint.type is int else 'a number'}",
                          param, ctx)
        try:
            return self.constraint.check(param.name if param and param.name else "value", number)
        except ParameterError as e:
            self.fail(e.message, param, ctx)


def flag_name(param: click.Parameter) -> str:
    """How messages name a parameter: its longest --option, else its metavar (INPUT)."""
    return max((o for o in param.opts if o.startswith("--")), key=len, default=param.human_readable_name)


class FeatxCommand(click.Command):
    """A featx command: a text option or argument given as "" is refused with one line naming it
    (an empty --shard once wrote an unsharded store; an empty --text-column read the default)."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            value = ctx.params.get(param.name or "")
            values = value if isinstance(value, tuple) else (value,)
            if isinstance(param.type, (click.types.StringParamType, click.Path)) and any(v == "" for v in values):
                raise click.BadParameter("must not be empty", ctx=ctx, param_hint=f"'{flag_name(param)}'")
        return super().invoke(ctx)


class ModalityOptionsCommand(FeatxCommand):
    """A command that also takes every registered modality's own options (Modality.options) as
    flags made from their dataclass fields when the command line is read: `--sample-rate` for an
    audio modality's `sample_rate`. Its callback receives them among its keyword arguments, None
    when not given (featx.modalities.modality_options names them)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from featx.modalities import modality_options

        params = super().get_params(ctx)
        taken = {param.name for param in params}
        made = [modality_option(field) for name, field in modality_options().items() if name not in taken]
        return [*params[:-1], *made, params[-1]]  # the help option stays last


def _flag(field: Any, unset: bool = False) -> tuple[list[str], dict[str, Any]]:
    """The declarations and settings of the click option of a declared field (an option group's,
    featx.options.option, or a modality's own): --its-name, typed by its constraint (a number
    range, a choice), a flag for a False default, --x/--no-x where negatable; its default the
    field's, or with `unset` None (not given), the field's default shown in the help instead."""
    flag, help, constraint = f"--{field.name.replace('_', '-')}", field.metadata.get("help", ""), \
        field.metadata.get("constraint")
    default, shown = (None, f"{help} [default: {field.default}]") if unset else (field.default, help)
    if field.default is False:
        return [flag], {"is_flag": True, "default": None if unset else False, "help": help}
    if field.metadata.get("negatable"):
        return [f"{flag}/--no-{flag[2:]}"], {"default": None, "help": help}
    kind: Any = Constrained(constraint) if isinstance(constraint, Interval) else \
        click.Choice([str(v) for v in constraint.values]) if isinstance(constraint, Options) else \
        click.Path(file_okay=False) if field.metadata.get("folder") else click.STRING
    return [flag], {"type": kind, "default": default, "show_default": not unset and default is not None,
                    "help": shown}


def flagged_fields(*groups: Any) -> list[Any]:
    """The fields of `groups` (featx.options' dataclasses) that have a flag of their own (a help line)."""
    import dataclasses

    return [f for group in groups for f in dataclasses.fields(group) if "help" in f.metadata]


def group_options(*groups: Any) -> Decorator:
    """A click option for every flagged field of `groups`, in field order: the CLI made from the
    library's declaration (help, type, range and default are the field's)."""
    return combined(*(click.option(*decls, **attrs) for decls, attrs in map(_flag, flagged_fields(*groups))))


def field_option(group: Any, name: str) -> Decorator:
    """The click option of one flagged field of `group`."""
    decls, attrs = _flag(next(f for f in flagged_fields(group) if f.name == name))
    return click.option(*decls, **attrs)


def modality_option(field: Any) -> click.Option:
    """The click option of a modality's own option field: None when not given (featx.extract then
    takes the field's default), so the modality sees only what the user set."""
    decls, attrs = _flag(field, unset=True)
    return click.Option(decls, **attrs)


class HeadKindsOption(click.Option):
    """--head: its help lists every registered head kind with its summary (featx.heads.HEAD_KINDS),
    read when the help is shown, so the command's start imports no head."""

    TEMPLATE = ("Head spec, repeatable: KIND or KIND:name=value,... ; a grid to sweep on validation is "
                "name=a|b|c. E.g. logreg:C=0.1, logreg:Cs=0.01|0.1|1, mlp:hidden=512,dropout=0.2, "
                "knn:n_neighbors=10 [default: {default}]. Kinds, with every parameter and its default: {kinds}.")

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from featx.heads import DEFAULT_HEADS, HEAD_KINDS
        from featx.heads.base import describe_parameters

        kinds = "; ".join(f"{kind} ({cls.summary}: {describe_parameters(cls)})" for kind, cls in HEAD_KINDS.items())
        self.help = self.TEMPLATE.format(kinds=kinds, default=" and ".join(DEFAULT_HEADS))
        return super().get_help_record(ctx)


def combined(*decorators: Decorator) -> Decorator:
    """Several click options as one decorator, so commands share them as written once."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def input_options(what: str = "INPUT") -> Decorator:
    """How to read an input file; the command receives them as **columns for `open_input_columns`."""
    return combined(
        click.option("--text-column", help="Column with the text [default: text; sentence for bundled SST-2]."),
        click.option("--image-column", help="Column with image paths, relative to the table: read it as images."),
        click.option("--label-column", help="Column with the label [default: label, when present]."),
        click.option("--multi-label", metavar="SEP", help="Multi-label: split the label cell on SEP (e.g. ','; a "
                     "JSON list cell is read as is)."),
        click.option("--label-columns", metavar="A,B,C", help="Multi-label: several 0/1 columns, one a class."),
        click.option("--target", metavar="COL[,COL]", help="Regression: one or more number columns as the targets."),
        click.option("--allow-empty-labels", is_flag=True, default=None,
                     help="Multi-label: a row may have no label (else an empty cell is an error)."),
        click.option("--label-names", type=click.Path(dir_okay=False), help="File of class names, one a line: "
                     "label i is line i's name, and every class is kept."),
        click.option("--where", metavar="COL=VALUE", help="Read only the rows whose COL holds VALUE (e.g. "
                     "split=train: a file holding its own splits)."),
        click.option("--id-column", help="Column with row ids [default: the 0-based row index]."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format [default: from the name]."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are 0, 1, ..."),
        click.option("--encoding", help=f"Text encoding of {what}, e.g. cp1252 [default: utf-8]."))


def protocol_options() -> Decorator:
    """How `featx train` evaluates; the command passes them on to featx.train.run_training."""
    return combined(
        click.option("--protocol", type=click.Choice(PROTOCOLS), default="full", show_default=True,
                     help="full: train / select on validation / report on test. mteb: MTEB's few-shot logistic "
                          "regression, exactly (featx.mteb): k rows per label, --experiments draws, mean on test."),
        click.option("--task", help="mteb: an MTEB task name (e.g. Banking77Classification); sets --k and "
                                    "--experiments as MTEB does."),
        click.option("--k", type=Constrained(COUNT), help="mteb: rows per label [default: the task's, else 8]."),
        click.option("--experiments", type=Constrained(COUNT),
                     help="mteb: draws of k rows per label [default: the task's, else 10]."),
        click.option("--seeds", type=Constrained(NON_NEGATIVE), default=50, show_default=True,
                     help="mteb: also report the task score under sampler seeds 0..N-1 (mean, sd, min, max); it "
                          "runs the whole protocol N more times, so it costs N times one run (a bar shows its "
                          "progress on a terminal); 0 skips."))


def open_input_columns(spec: str, columns: dict[str, Any]) -> Source:
    """The Source for `spec` read as the `input_options` in `columns` say, by the modality that
    claims it (featx.modalities.open_source): images for a folder, a .zip (or ``X.zip:FOLDER``)
    or a table with --image-column, else a table of texts."""
    from featx.modalities import open_source

    options = dict(columns)
    return open_source(spec, header=not options.pop("no_header"), **options)


DEVICE_OPTION = field_option(ModelOptions, "device")
DTYPE_OPTION = field_option(ModelOptions, "dtype")
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
