"""Jinja2 templates in inventory and playbook values: Ansible's names, sandboxed and bounded.

Values such as ``"{{ groups['mail'] | difference([inventory_hostname]) }}"``
render with Ansible's filters (``difference``, ``union``, ``intersect``,
``unique``, ``flatten``, ``bool``, Jinja2's own), fleet's ``peer_plan``
(``fleet.peers``) and ``lookup('env'|'file')``.
An inventory is data, often written by many hands, so rendering it must not
run code on the runner or stall it:

- Jinja2's immutable sandbox: no ``__globals__``, ``__class__`` or other
  private attributes, no method that changes a value.
- Bounded cost per rendering (the constants below): loop iterations and
  calls counted, the size of what ``*``, ``**``, ``+``, ``%``, ``~`` and the
  output make checked before it is made, numbers handed to functions and
  filters bounded, and a value that still holds a template after rendering
  (a variable that refers to itself, directly or through others) is an error,
  never a silently kept literal.

Each refusal is a ``TemplateLimitError`` (a ``jinja2.TemplateError``) whose
message names the limit; the playbook adds the variable and the file.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.nativetypes import (
    NativeCodeGenerator,
    NativeEnvironment,
    NativeTemplate,
    native_concat,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from fleet.errors import PlaybookError
from fleet.inventory.limits import read_text_bounded
from fleet.peers import peer_plan_filter
from fleet.truth import parse_bool

#: Loop iterations plus function and filter calls in one rendering of one value.
MAX_TEMPLATE_STEPS = 100_000
#: Characters (or items) one operation may make, and one rendering may output.
MAX_TEMPLATE_SIZE = 1_000_000
#: Bits of an integer ``**`` or ``*`` may make (2**4096 has 1,234 digits).
MAX_TEMPLATE_INT_BITS = 4096
#: Times a value is rendered again while its result still holds a template.
MAX_TEMPLATE_RENDERINGS = 6


class TemplateLimitError(jinja2.TemplateError):
    """A template asked for more than a limit of fleet.templating allows."""


@dataclass
class _Budget:
    steps: int = 0
    output: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("fleet_template_budget", default=None)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > MAX_TEMPLATE_STEPS:
        raise TemplateLimitError(
            f"more than {MAX_TEMPLATE_STEPS:,} loop iterations and calls "
            "(fleet.templating.MAX_TEMPLATE_STEPS)"
        )


def _too_big(what: str) -> TemplateLimitError:
    return TemplateLimitError(
        f"{what} would be larger than {MAX_TEMPLATE_SIZE:,} (fleet.templating.MAX_TEMPLATE_SIZE)"
    )


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _check_numbers(values: Iterable[Any]) -> None:
    """A number above MAX_TEMPLATE_SIZE handed to a function ('x'.center(10**9),
    range(10**9), indent(10**9)...) would make something that big."""
    for value in values:
        if _is_int(value) and abs(value) > MAX_TEMPLATE_SIZE:
            raise _too_big(f"a call with the number {value}")


def _check_int_bits(bits: int) -> None:
    if bits > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"a number of about {bits:,} bits is over {MAX_TEMPLATE_INT_BITS:,} "
            "(fleet.templating.MAX_TEMPLATE_INT_BITS)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# printf widths and precisions: '%0999999999d' makes a gigabyte from one number.
_PRINTF_NUMBER = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse what would be too big before Python makes it."""
    if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        _check_int_bits(right * abs(left).bit_length())
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            _check_int_bits(abs(left).bit_length() + abs(right).bit_length())
        for sequence, count in ((left, right), (right, left)):
            if _size(sequence) and _is_int(count) and _size(sequence) * count > MAX_TEMPLATE_SIZE:
                raise _too_big("a repeated string or list")
    elif operator == "+" and _size(left) + _size(right) > MAX_TEMPLATE_SIZE:
        raise _too_big("a joined string or list")
    elif operator == "%" and isinstance(left, str):
        _check_numbers(right if isinstance(right, tuple) else (right,))
        for match in _PRINTF_NUMBER.finditer(left):
            _check_numbers(int(n) for n in match.groups() if n)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """A ``{% for %}`` loop's items, each one step of the budget."""
    for item in iterable:
        _step()
        yield item


def _concat(*parts: Any) -> str:
    """Jinja2's ``~``, its result's size checked before it is made."""
    texts = [str(part) for part in parts]
    if sum(map(len, texts)) > MAX_TEMPLATE_SIZE:
        raise _too_big("a joined string")
    return "".join(texts)


def _counted_output(values: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for value in values:
        if budget is not None:
            budget.output += _size(value) if isinstance(value, str) else 1
            if budget.output > MAX_TEMPLATE_SIZE:
                raise _too_big("the rendered value")
        yield value


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter counted as a step, its numbers bounded (keeps Jinja2's pass_* marks)."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        _check_numbers(itertools.chain(args, kwargs.values()))
        return function(*args, **kwargs)

    return guarded


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every operation that can grow counted or checked."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        # lipsum, cycler, joiner: not Ansible's business; lipsum(n) makes any amount of text.
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.globals["lookup"] = _lookup
        self.filters.update(FILTERS)
        self.filters["peer_plan"] = peer_plan_filter()  # fleet.peers: the default probe plan
        self.filters = {name: _guarded(f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        _check_numbers(itertools.chain(args, kwargs.values()))
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Loops and ``~`` go through the budget: neither passes through the sandbox."""
        tree: nodes.Template = _Budgeted().visit(super()._parse(source, name, filename))
        return tree


class _Budgeted(NodeTransformer):
    """``{% for x in xs %}`` -> ``for x in _counted(xs)``; ``a ~ b`` -> ``_concat(a, b)``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("_counted", [node.iter])
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("_concat", node.nodes)


def _call(function: str, args: list[Any]) -> nodes.Call:
    return nodes.Call(nodes.ImportedName(f"{__name__}.{function}"), args, [], None, None)


class _TextSandbox(_Sandbox):
    concat = staticmethod(lambda values: "".join(_counted_output(values)))


class _NativeSandbox(NativeEnvironment, _Sandbox):
    """Values keep their type (a list stays a list), as with Ansible's native types."""

    code_generator_class = NativeCodeGenerator
    concat = staticmethod(lambda values: _native_concat(_counted_output(values)))


def _native_concat(values: Iterator[Any]) -> Any:
    """Jinja2's native concatenation, except that a result holding a template stays
    a string (to be rendered again), never read as a Python set literal."""
    head = list(itertools.islice(values, 2))
    if len(head) == 1 and not isinstance(head[0], str):
        return head[0]
    raw = "".join(str(v) for v in itertools.chain(head, values))
    return raw if has_template(raw) else native_concat([raw])


class _NativeSandboxTemplate(NativeTemplate):
    environment_class: type[NativeEnvironment] = _NativeSandbox


_NativeSandbox.template_class = _NativeSandboxTemplate


# -- Ansible's filters and lookups ---------------------------------------------


def _to_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, jinja2.Undefined):
        return []
    if isinstance(value, (str, bytes, Mapping)):
        return [value]
    return list(value)


def _unique(seq: Iterable[Any]) -> list[Any]:
    kept: list[Any] = []
    seen = _Members()
    for item in seq:
        if item not in seen:
            seen.add(item)
            kept.append(item)
    return kept


class _Members:
    """``in`` for a filter's list: a set for hashable items (host names), so
    ``groups['mail'] | difference(...)`` stays linear on a big group."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self.hashable: set[Any] = set()
        self.other: list[Any] = []
        for item in items:
            self.add(item)

    def add(self, item: Any) -> None:
        try:
            self.hashable.add(item)
        except TypeError:
            self.other.append(item)

    def __contains__(self, item: Any) -> bool:
        try:
            return item in self.hashable
        except TypeError:
            return item in self.other


def _keep(a: Any, b: Any, *, wanted: bool) -> list[Any]:
    """The unique items of ``a`` that are (or, not ``wanted``, are not) in ``b``."""
    members = _Members(_to_list(b))
    return [x for x in _unique(_to_list(a)) if (x in members) is wanted]


# The Ansible filters a fleet playbook is likely to use.
FILTERS: dict[str, Callable[..., Any]] = {
    "difference": lambda a, b: _keep(a, b, wanted=False),
    "union": lambda a, b: _unique(_to_list(a) + _to_list(b)),
    "intersect": lambda a, b: _keep(a, b, wanted=True),
    "unique": lambda a: _unique(_to_list(a)),
    "flatten": lambda a: list(
        itertools.chain.from_iterable(
            _to_list(x) if isinstance(x, (list, tuple)) else [x] for x in _to_list(a)
        )
    ),
    "bool": lambda a: parse_bool(a) is True,  # Ansible coerces any other value to False
}


def _lookup(kind: str, *terms: str, default: Any = None) -> Any:
    """Ansible's ``lookup('env', NAME)`` and ``lookup('file', PATH)``: secrets for CI jobs."""
    if kind == "env":
        values = [os.environ.get(t, "" if default is None else default) for t in terms]
    elif kind == "file":
        values = [
            read_text_bounded(Path(t).expanduser(), PlaybookError, "lookup file").rstrip("\n")
            for t in terms
        ]
    else:
        raise jinja2.TemplateError(f"lookup {kind!r} is not supported (env, file)")
    return ",".join(values)


def has_template(value: Any) -> bool:
    """True when a value (or one inside it) holds ``{{`` or ``{%``; ``!unsafe`` never does."""
    from fleet.inventory.yamlload import UnsafeText

    if isinstance(value, UnsafeText):  # !unsafe: literal, as in Ansible
        return False
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


class Renderer:
    """Renders templated values per host; templates are compiled once.

    Each ``render``/``render_text`` call has its own budget (MAX_TEMPLATE_STEPS,
    MAX_TEMPLATE_SIZE); any refusal is a TemplateLimitError or a
    ``jinja2.sandbox.SecurityError``.
    """

    def __init__(self) -> None:
        self.env = _NativeSandbox()
        self.text_env = _TextSandbox()
        self._compiled: dict[tuple[bool, str], jinja2.Template] = {}

    def render_text(self, value: str, context: Mapping[str, Any]) -> str:
        """A template rendered as a plain string: a password '0x1F' stays '0x1F'.

        Re-rendered while the result is still a template, as Ansible does for
        ``ansible_password: "{{ vault_pw }}"`` with ``vault_pw: "{{ lookup(...) }}"``.
        """
        token = _BUDGET.set(_Budget())
        try:
            return str(self._render(value, context, (), text=True))
        finally:
            _BUDGET.reset(token)

    def render(self, value: Any, context: Mapping[str, Any]) -> Any:
        token = _BUDGET.set(_Budget())
        try:
            return self._render(value, context, (), text=False)
        finally:
            _BUDGET.reset(token)

    def _render(
        self, value: Any, context: Mapping[str, Any], seen: tuple[str, ...], *, text: bool
    ) -> Any:
        if isinstance(value, str) and has_template(value):
            _check_again(value, seen)
            result = self._template(value, text).render(context)
            if isinstance(result, jinja2.Undefined):
                # Native rendering hands back a lone undefined value instead of raising.
                raise jinja2.UndefinedError(result._undefined_message)
            if has_template(result):  # a variable holding a template
                return self._render(result, context, (*seen, value), text=text)
            return result
        if isinstance(value, dict):
            return {k: self._render(v, context, seen, text=text) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, context, seen, text=text) for v in value]
        return value

    def _template(self, source: str, text: bool) -> jinja2.Template:
        template = self._compiled.get((text, source))
        if template is None:
            env = self.text_env if text else self.env
            template = self._compiled[text, source] = env.from_string(source)
        return template


def _check_again(value: str, seen: tuple[str, ...]) -> None:
    """Another rendering of a template result: refused for a loop or past the limit."""
    if value in seen:
        raise TemplateLimitError(
            "it refers to itself (directly or through other variables): the template "
            "comes back after rendering"
        )
    if len(seen) >= MAX_TEMPLATE_RENDERINGS:
        raise TemplateLimitError(
            f"it still holds a template after {MAX_TEMPLATE_RENDERINGS} renderings "
            "(fleet.templating.MAX_TEMPLATE_RENDERINGS): does it refer to itself?"
        )
