# Sourced by scripts/install-<system>.sh: `cached_venv DIR PACKAGE...` makes a virtual
# environment at DIR holding PACKAGEs, once. A venv whose install finished is marked with
# DIR/.complete and left alone (a rerun costs nothing); a half-made one is made again.
cached_venv() {
  local venv="$1"
  shift
  if [ -f "$venv/.complete" ]; then
    return 0
  fi
  echo "installing $* into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "$@"
  touch "$venv/.complete"
}
