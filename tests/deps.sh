#!/bin/sh
# Install the Debian packages given as arguments when any is missing
# (apt-get, as root or through sudo); an argument "pkg-" is a package
# that must not be installed (apt-get removes it in the same run).  Quiet
# when all is as asked.
missing=""
for p in "$@"; do
	case "$p" in
	*-)
		dpkg-query -W -f='${Status}' "${p%-}" 2>/dev/null | grep -q "install ok installed" &&
			missing="$missing $p" ;;
	*)
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
	echo "deps: not root and no sudo; install these packages:$missing" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q $missing >/dev/null 2>&1 || {
	$SUDO apt-get update -q >/dev/null 2>&1
	$SUDO apt-get install -y -q $missing || { echo "deps: apt-get install failed" >&2; exit 1; }
}
