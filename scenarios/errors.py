"""The one error type for bad user input: it names the file, the field and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: a suite file, an ``.npz`` file or a dataset option.

    The message reads ``FILE: FIELD: PROBLEM (expected EXPECTATION)`` so the command line can
    print it on one line and exit with code 2.
    """

    def __init__(self, field: str, problem: str, *, expected: str | None = None,
                 source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.expected = expected
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        tail = f" (expected {self.expected})" if self.expected else ""
        return f"{where}{self.field}: {self.problem}{tail}"

    def within(self, source: str, prefix: str = "") -> InputError:
        """The same error, located in ``source`` and under the field path ``prefix``.

        An error that already names its own file (an ``.npz``) is kept as it is: its field
        belongs to that file.
        """
        if self.source:
            return self
        field = f"{prefix}.{self.field}" if prefix and self.field else (prefix or self.field)
        return InputError(field, self.problem, expected=self.expected, source=source or None)


def reject_unknown(given, allowed, *, what: str, field: str = "") -> None:
    """Raise an :class:`InputError` naming the first key of ``given`` that is not ``allowed``
    (its field is ``field.key``) and listing the allowed keys."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InputError(f"{field}.{unknown[0]}" if field else unknown[0], f"unknown {what}",
                         expected=f"one of {', '.join(sorted(allowed)) or 'none'}")
