"""Shipped environments: `calculator` (arithmetic with a calculator tool) and `python_tool`
(maths / code problems with a sandboxed Python tool)."""
