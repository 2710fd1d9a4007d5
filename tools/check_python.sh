#!/bin/sh
# Usage: tools/check_python.sh PYTHON [FIX]
# Exit 0 when the interpreter PYTHON is Python >= 3.10 (pyproject's requires-python); otherwise print one
# sentence naming what was found and FIX (default: install Python 3.10+ and rerun `make setup`) to stderr
# and exit 2. Plain POSIX sh, so that it can judge an interpreter too old to run the project's own code.
py=${1:-python3}
fix=${2:-"install Python 3.10 or newer and run \`make setup PYTHON=python3.11\` (or whichever python3.X you installed)"}
need_major=3
need_minor=10
version=$("$py" -c 'import sys; sys.stdout.write("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null)
case $version in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *)
        if command -v "$py" >/dev/null 2>&1; then found="$py does not run as Python"; else found="$py was not found"; fi
        echo "medadv needs Python $need_major.$need_minor or newer, but $found: $fix." >&2
        exit 2 ;;
esac
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ "$major" -gt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -ge "$need_minor" ]; }; then
    exit 0
fi
echo "medadv needs Python $need_major.$need_minor or newer, but $py is Python $version: $fix." >&2
exit 2
