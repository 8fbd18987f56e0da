"""Procedural control (docs/recipes.md): a recipe's phases run by the culture's state, with an
ISA-88 / PackML-like state model and operator commands. Pure logic over given times and
readings, like `control`: the runtime feeds it each tick and carries out what it asks."""
