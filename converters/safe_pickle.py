"""A bounded pickle interpreter that can only build what its caller hands it.

`pickle.Unpickler` resolves globals through `find_class` but then calls whatever it got, sets attributes, and puts
no bound on memo entries, nesting or how many objects a few bytes of opcodes create. Here the opcodes are decoded by
`pickletools.genops` and run by this small stack machine instead, so that:

- a global becomes only what `resolve(module, name)` returns; nothing is imported;
- REDUCE / NEWOBJ / INST / OBJ call only `SafeCall` and `SafeClass` objects (the caller's own stand-ins), and BUILD
  touches only `Buildable` ones, which may replace themselves (so a placeholder can become a validated array);
- the pickle's size, memo entries, container nesting and the number of objects and items it creates are bounded;
- every failure is a `PickleRefused` with a one-line reason and the byte position, never a traceback.
"""
from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import Any, Callable

_CONTAINERS = (list, dict, tuple, set, frozenset)
_INTS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_SCALARS = frozenset({"FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                      "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class PickleRefused(Exception):
    """The pickle asked for something not allowed, or is malformed (str: one line)."""


@dataclass(frozen=True)
class PickleLimits:
    max_bytes: int = 32 << 20        # the pickle itself (checkpoint pickles are KBs; tensors live outside it)
    max_memo: int = 1 << 20          # memo entries (a state dict memoizes ~8 per tensor)
    max_depth: int = 64              # nested containers and MARKs
    max_objects: int = 2_000_000     # objects created plus container items inserted (mmpose: ~50k)
    max_int_bits: int = 4096         # a LONG4 can hold a number that takes minutes to print or multiply


class SafeCall:
    """A function the pickle may call by REDUCE (name is what error lines show)."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable):
        self.name, self.fn = name, fn

    def __repr__(self):
        return f"<{self.name}>"


class SafeClass:
    """A class the pickle may instantiate (NEWOBJ, INST, OBJ, or REDUCE on the class itself)."""

    name = "class"

    def new(self, args: tuple, kwargs: dict):
        raise NotImplementedError


class Buildable:
    """An object BUILD may give state to; `build` returns a replacement object or None to stay itself."""

    def build(self, state):
        raise NotImplementedError


def describe(obj) -> str:
    """What an object is, for an error line, without repr() of something huge or deeply nested."""
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return _one_line(name, 80)
    if isinstance(obj, (int, float, bool)) or obj is None:
        return _one_line(repr(obj), 40)
    if isinstance(obj, str):
        return f"the string {_one_line(repr(obj[:40]), 48)}"
    return f"a {type(obj).__name__}"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Machine:
    def __init__(self, resolve, persistent_load, limits: PickleLimits):
        self.resolve, self.persistent_load, self.limits = resolve, persistent_load, limits
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict[int, Any] = {}
        self.depths: dict[int, tuple[int, Any]] = {}  # id -> (depth, obj); holding obj keeps the id from reuse
        self.memo_keys: dict[int, list] = {}  # id of a memoized Buildable -> its memo keys (BUILD may replace it)
        self.spent = 0

    # -- accounting ------------------------------------------------------------------------------------------
    def spend(self, n: int = 1) -> None:
        self.spent += n
        if self.spent > self.limits.max_objects:
            raise PickleRefused(f"pickle creates more than {self.limits.max_objects} objects (limit)")

    def depth(self, obj) -> int:
        return self.depths[id(obj)][0] if isinstance(obj, _CONTAINERS) and id(obj) in self.depths else 0

    def contain(self, container, items) -> None:
        """Record container's nesting depth after `items` went into it."""
        d = max([self.depth(container) - 1, *map(self.depth, items)], default=0) + 1
        if d > self.limits.max_depth:
            raise PickleRefused(f"pickle nests containers deeper than {self.limits.max_depth} levels (limit)")
        self.depths[id(container)] = (d, container)

    def push_new(self, obj, items=()) -> None:
        self.spend(1 + len(items))
        if isinstance(obj, _CONTAINERS):
            self.depths.pop(id(obj), None)
            self.contain(obj, items)
        self.stack.append(obj)

    def pop(self):
        if not self.stack:
            raise PickleRefused("pickle pops from an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            raise PickleRefused("pickle closes a MARK it never opened")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self):
        if not self.stack:
            raise PickleRefused("pickle operates on an empty stack")
        return self.stack[-1]

    # -- object construction --------------------------------------------------------------------------------
    def call(self, func, args, kwargs=None):
        if not isinstance(args, tuple):
            raise PickleRefused("pickle calls with arguments that are not a tuple")
        if isinstance(func, SafeCall):
            if kwargs:
                raise PickleRefused(f"pickle passes keyword arguments to {func.name}")
            return func.fn(*args)
        if isinstance(func, SafeClass):
            return func.new(args, dict(kwargs or {}))
        raise PickleRefused(f"pickle calls {describe(func)}, which is not an allowed function")

    def build(self, state) -> None:
        obj = self.top()
        if not isinstance(obj, Buildable):
            raise PickleRefused(f"pickle sets state on a {type(obj).__name__}, which takes none")
        new = obj.build(state)
        if new is not None and new is not obj:
            self.stack[-1] = new
            for key in self.memo_keys.pop(id(obj), ()):  # memoized before BUILD: later GETs see the replacement
                if self.memo.get(key) is obj:
                    self.memo[key] = new

    def check_int(self, value: int) -> int:
        if value.bit_length() > self.limits.max_int_bits:
            raise PickleRefused(f"pickle holds an integer of {value.bit_length()} bits (limit "
                                f"{self.limits.max_int_bits})")
        return value

    # -- the opcodes ----------------------------------------------------------------------------------------
    def run(self, data: bytes):
        ops = pickletools.genops(data)
        while True:
            try:
                opcode, arg, pos = next(ops)
            except StopIteration:
                break
            except (ValueError, UnicodeError, OverflowError) as exc:  # the decoder: unknown opcode, short argument
                raise PickleRefused(f"malformed pickle ({_one_line(exc, 100)})") from None
            name = opcode.name
            try:
                if name == "STOP":
                    if self.marks:
                        raise PickleRefused("pickle stops inside an open MARK")
                    return self.pop()
                self.step(name, arg)
            except PickleRefused as exc:
                raise PickleRefused(f"{exc} (opcode {name} at byte {pos})") from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, UnicodeError, OverflowError,
                    RecursionError) as exc:
                raise PickleRefused(f"malformed pickle: {name} at byte {pos} failed "
                                    f"({type(exc).__name__}: {_one_line(exc, 100)})") from None
        raise PickleRefused("pickle ends without STOP")

    def step(self, name: str, arg) -> None:  # noqa: C901 - one flat dispatch reads best for a stack machine
        stack = self.stack
        if name in _PUTS:  # the most frequent opcodes first: memo, then plain values
            key = len(self.memo) if name == "MEMOIZE" else arg
            if key not in self.memo and len(self.memo) >= self.limits.max_memo:
                raise PickleRefused(f"pickle memoizes more than {self.limits.max_memo} objects (limit)")
            obj = self.memo[key] = self.top()
            if isinstance(obj, Buildable):
                self.memo_keys.setdefault(id(obj), []).append(key)
        elif name in _GETS:
            if arg not in self.memo:
                raise PickleRefused(f"pickle reads memo entry {arg} that was never written")
            self.spend()
            stack.append(self.memo[arg])
        elif name in _INTS:
            self.spend()
            stack.append(self.check_int(arg) if type(arg) is int else arg)
        elif name in _SCALARS:
            self.spend()
            stack.append(arg)
        elif name in ("PROTO", "FRAME"):
            if name == "PROTO" and arg > 5:
                raise PickleRefused(f"unknown pickle protocol {arg}")
        elif name == "BYTEARRAY8":
            self.push_new(bytes(arg))
        elif name == "NONE":
            self.push_new(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            self.push_new(name == "NEWTRUE")
        elif name == "EMPTY_LIST":
            self.push_new([])
        elif name == "EMPTY_DICT":
            self.push_new({})
        elif name == "EMPTY_TUPLE":
            self.push_new(())
        elif name == "EMPTY_SET":
            self.push_new(set())
        elif name == "MARK":
            if len(self.marks) >= self.limits.max_depth:
                raise PickleRefused(f"pickle nests MARKs deeper than {self.limits.max_depth} (limit)")
            self.marks.append(stack)
            self.stack = []
        elif name == "POP":
            if self.stack:
                self.stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.spend()
            self.stack.append(self.top())
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            items = self.pop_mark()
            self.push_new({"TUPLE": tuple, "LIST": list, "FROZENSET": frozenset}[name](items), items)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise PickleRefused("pickle builds a tuple from an empty stack")
            items = stack[-n:]
            del stack[-n:]
            self.push_new(tuple(items), items)
        elif name == "DICT":
            items = self.pop_mark()
            if len(items) % 2:
                raise PickleRefused("pickle builds a dict from an odd number of items")
            self.push_new(dict(zip(items[::2], items[1::2])), items)
        elif name in ("APPEND", "APPENDS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            target = self.top()
            if type(target) is not list:
                raise PickleRefused(f"pickle appends to a {type(target).__name__}")
            self.spend(len(items))
            target.extend(items)
            self.contain(target, items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value, key = self.pop(), self.pop()
                items = [key, value]
            else:
                items = self.pop_mark()
            target = self.top()
            if not isinstance(target, dict) or len(items) % 2:
                raise PickleRefused(f"pickle sets items on a {type(target).__name__}")
            self.spend(len(items) // 2)
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
            self.contain(target, items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.top()
            if type(target) is not set:
                raise PickleRefused(f"pickle adds set items to a {type(target).__name__}")
            self.spend(len(items))
            target.update(items)
            self.contain(target, items)
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            found = self.resolve(module, qualname)
            if name == "GLOBAL":
                self.push_new(found)
            else:
                self.push_new(self.call(found, tuple(self.pop_mark())))
        elif name == "STACK_GLOBAL":
            qualname, module = self.pop(), self.pop()
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise PickleRefused("pickle names a global with something that is not a string")
            self.push_new(self.resolve(module, qualname))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            self.push_new(self.call(func, args))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleRefused("pickle OBJ without a class")
            self.push_new(self.call(items[0], tuple(items[1:])))
        elif name == "NEWOBJ":
            args = self.pop()
            cls = self.pop()
            if not isinstance(cls, SafeClass):
                raise PickleRefused(f"pickle instantiates {describe(cls)}, which is not an allowed class")
            self.push_new(self.call(cls, args))
        elif name == "NEWOBJ_EX":
            kwargs, args = self.pop(), self.pop()
            cls = self.pop()
            if not isinstance(cls, SafeClass) or not isinstance(kwargs, dict):
                raise PickleRefused(f"pickle instantiates {describe(cls)}, which is not an allowed class")
            self.push_new(self.call(cls, args, kwargs))
        elif name == "BUILD":
            self.build(self.pop())
        elif name in ("PERSID", "BINPERSID"):
            self.push_new(self.persistent_load(arg if name == "PERSID" else self.pop()))
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise PickleRefused("pickle uses the copyreg extension registry (not allowed)")
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise PickleRefused("pickle uses out-of-band buffers (not allowed)")
        else:
            raise PickleRefused(f"unsupported pickle opcode {name}")


def load(data: bytes, resolve: Callable[[str, str], Any], persistent_load: Callable[[Any], Any],
         limits: PickleLimits = PickleLimits()):
    """The object the pickle `data` describes, built only from what `resolve` and `persistent_load` return."""
    if len(data) > limits.max_bytes:
        raise PickleRefused(f"pickle of {len(data)} bytes is larger than the {limits.max_bytes}-byte limit")
    return _Machine(resolve, persistent_load, limits).run(data)
