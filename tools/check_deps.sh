#!/usr/bin/env bash
# Enforces the layer dependency rule (docs/architecture.md): a file in qforge/<layer>/ may include only
# headers of its own layer and the layers it is allowed to depend on. Exit 1 listing each violation.
set -euo pipefail
cd "$(dirname "$0")/.."

allowed() {
  case "$1" in
    base) echo "base" ;;
    numerics) echo "base numerics" ;;
    tensor) echo "base numerics tensor" ;;
    config) echo "base numerics config" ;;
    io) echo "base numerics tensor io" ;;
    runtime) echo "base numerics tensor runtime" ;;
    model) echo "base numerics tensor io runtime model" ;;
    quant) echo "base numerics tensor config io runtime model quant" ;;
    calib) echo "base numerics tensor config io runtime model quant calib" ;;
    export) echo "base numerics tensor config io model quant export" ;;
    cli) echo "base numerics tensor config io runtime model quant calib export cli" ;;
    *) echo "" ;;
  esac
}

status=0
while IFS= read -r file; do
  layer=$(echo "$file" | cut -d/ -f2)
  ok=$(allowed "$layer")
  while IFS= read -r inc; do
    dep=$(echo "$inc" | sed -E 's|.*"qforge/([a-z_]+)/.*|\1|')
    if ! echo " $ok " | grep -q " $dep "; then
      echo "layer violation: $file includes qforge/$dep/ (allowed: $ok)"
      status=1
    fi
  done < <(grep -hoE '#include "qforge/[a-z_]+/[^"]+"' "$file" || true)
done < <(find qforge -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' | sort)

# model/ never includes quant/ or calib/; runtime/ never sees configs or models; export/ needs neither
# calib/ nor runtime/ -- all covered by the table above.
if [ $status -eq 0 ]; then echo "check_deps: all includes point down the layer table"; fi
exit $status
