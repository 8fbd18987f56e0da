"""The fields mypy is shown of `ChamberOptions` (written out under TYPE_CHECKING, since mypy
cannot follow `create_model`) are the generated class's: one per row of the table, in order."""
from __future__ import annotations

import ast
import inspect

from sim_hardware.chamber import options
from sim_hardware.model.parameters import INITIAL_CONDITION_TABLE


def test_the_declared_fields_are_the_tables_rows_in_order() -> None:
    tree = ast.parse(inspect.getsource(options))
    [declared] = [node for node in ast.walk(tree)
                  if isinstance(node, ast.ClassDef) and node.name == "ChamberOptions"]
    names = [node.target.id for node in declared.body
             if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    table = [row.name for row in INITIAL_CONDITION_TABLE]
    assert names == table
    generated = [name for name in options.ChamberOptions.model_fields
                 if name not in options._ChamberKeys.model_fields]
    assert generated == table
