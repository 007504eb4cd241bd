"""The built-in mapping files (package data).

pyproject.toml installs this folder as the package `bridge.builtin_mappings`, so the
*.yaml here ship in the wheel and stay the one copy in the repo. This file only makes the
folder importable (an editable install cannot map a folder without one); see
`bridge.mapping.builtin_mappings`.
"""
