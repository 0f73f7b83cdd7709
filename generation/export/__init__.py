"""Exports of a generated variant into layouts that existing training code already reads.

`ooo`: the published ToysAD-8K / PartsAD-15K release layout; `mvtec3d`: per-object crops in the MVTec 3D-AD layout.
Both are described in docs/exports.md.
"""
