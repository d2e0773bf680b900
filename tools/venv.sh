# Sourced by tools/run.sh and tools/test.sh: create .venv on first use and (re)install the
# project with its dev extra whenever pyproject.toml is newer than the last install.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || exit 1
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1
  .venv/bin/pip install -q -e '.[dev]' || exit 1
  touch .venv/.installed
fi
export PATH="$PWD/.venv/bin:$PATH"
