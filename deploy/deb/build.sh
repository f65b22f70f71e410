#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the xmirror .deb with dpkg-deb from a built binary:
#   deploy/deb/build.sh BINARY VERSION OUTDIR
#   deploy/deb/build.sh --debver VERSION [EPOCH]    (prints the package version only)
# The man page and the shell completion come from the binary itself (hidden
# `xmirror man` and `xmirror completion`), so they match the commands it has.
set -euo pipefail

# debver maps a `git describe` version to a Debian one: v1.2.3 -> 1.2.3-1,
# v1.2.3-4-gabc -> 1.2.3+4+gabc-1, and anything else (a bare commit, which
# may start with a digit: 7962cea) to one below every release:
# 0~git+<commit time, UTC>.<commit>-1 given the commit time in seconds (so a
# later commit is an upgrade whatever the hashes; the "+" sorts above the
# earlier 0~git<commit>-1 form), else 0~git<commit>-1.
debver() {
	local v=${1#v} epoch=${2:-}
	if [[ ! $v =~ ^[0-9]+\.[0-9]+ ]]; then
		if [[ -n $epoch ]]; then
			v="0~git+$(date -u -d "@$epoch" +%Y%m%d%H%M%S).${v}"
		else
			v="0~git${v}"
		fi
	fi
	echo "${v//-/+}-1"
}
if [[ ${1:-} == --debver ]]; then
	debver "$2" "${3:-}"
	exit 0
fi

bin=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/xmirror
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/xmirror" \
	"$doc/examples" "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" \
	"$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$bin" "$root/usr/bin/xmirror"
install -m 0644 "$top"/deploy/systemd/*.service "$root/lib/systemd/system/"
install -m 0644 "$top/deploy/xmirror.yaml" "$root/etc/xmirror/xmirror.yaml"
for f in lb collector source full seed; do
	install -m 0644 "$top/config/examples/$f.yaml" "$doc/examples/$f.yaml"
done
install -m 0644 "$top/docs/deploy.md" "$doc/deploy.md"
"$bin" man | gzip -9n >"$root/usr/share/man/man8/xmirror.8.gz"
"$bin" completion bash >"$root/usr/share/bash-completion/completions/xmirror"
"$bin" completion zsh >"$root/usr/share/zsh/vendor-completions/_xmirror"
"$bin" completion fish >"$root/usr/share/fish/vendor_completions.d/xmirror.fish"
install -m 0644 "$here/copyright" "$doc/copyright"
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
debver=$(debver "$version" "$epoch")
date=$(date -R -d "@$epoch")
printf 'xmirror (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- xmirror maintainers <xmirror@users.noreply.github.com>  %s\n' \
	"$debver" "$version" "$date" | gzip -9n >"$doc/changelog.Debian.gz"
# Go links statically on purpose: one binary that runs on every distribution.
install -d -m 0755 "$root/usr/share/lintian/overrides"
echo "xmirror: statically-linked-binary [usr/bin/xmirror]" >"$root/usr/share/lintian/overrides/xmirror"
find "$root/usr/share" "$root/etc" -type f -exec chmod 0644 {} +

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
echo /etc/xmirror/xmirror.yaml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control" >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/xmirror_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
