"""Backends that walk the expression tree: NumPy values, SymPy values, generated code."""
