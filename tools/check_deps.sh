#!/usr/bin/env bash
# Enforces the layer dependency rule (docs/architecture.md): a file in qforge/<layer>/ may reach only
# headers of its own layer and the layers it is allowed to depend on, directly or through any chain of
# qforge headers (headers include headers). Exit 1 listing each violation once per (file, forbidden
# layer), with the shortest include chain that reaches it.
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
    forward) echo "base numerics tensor config io runtime model quant forward" ;;
    calib) echo "base numerics tensor config io runtime model quant forward calib" ;;
    export) echo "base numerics tensor config io model quant export" ;;
    cli) echo "base numerics tensor config io runtime model quant forward calib export cli" ;;
    *) echo "" ;;
  esac
}

# direct[f]: the qforge headers file f includes directly, one path per line (each file is read once).
declare -A direct
load_includes() {
  local f=$1
  if [[ -z ${direct[$f]+set} ]]; then
    direct[$f]=$(grep -hoE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"qforge/[^"]+"' "$f" 2>/dev/null |
                   sed -E 's|.*"(qforge/[^"]+)"|\1|' || true)
  fi
}

layer_of() { echo "$1" | cut -d/ -f2; }

status=0
while IFS= read -r file; do
  layer=$(layer_of "$file")
  ok=" $(allowed "$layer") "
  # Breadth-first over the include graph from `file`: the first path found to a header is a shortest one.
  declare -A via=()       # header -> the file that included it on the shortest chain
  declare -A reported=()  # forbidden layers already reported for this file
  queue=("$file")
  via[$file]=""
  head=0
  while (( head < ${#queue[@]} )); do
    cur=${queue[$head]}
    head=$((head + 1))
    load_includes "$cur"
    while IFS= read -r inc; do
      [[ -z $inc || -n ${via[$inc]+set} ]] && continue
      via[$inc]=$cur
      dep=$(layer_of "$inc")
      if [[ $ok != *" $dep "* && -z ${reported[$dep]+set} ]]; then
        reported[$dep]=1
        chain=$inc
        hop=$cur
        while [[ -n $hop ]]; do
          chain="$hop -> $chain"
          hop=${via[$hop]}
        done
        echo "layer violation: $file reaches qforge/$dep/ (allowed: $(allowed "$layer")): $chain"
        status=1
      fi
      [[ -f $inc ]] && queue+=("$inc")  # a header that does not exist is the compiler's to report
    done <<< "${direct[$cur]}"
  done
  unset via reported
done < <(find qforge \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) | sort)

# model/ never includes quant/ or calib/; runtime/ never sees configs or models; export/ needs neither
# calib/ nor runtime/ nor forward/ -- all covered by the table above.
if [ $status -eq 0 ]; then echo "check_deps: all includes (direct and transitive) point down the layer table"; fi
exit $status
