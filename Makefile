# ctrfs: run as root on Debian 12.  `make test` and `make demo` install what they need.
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := fuse3 libfuse3-dev pkg-config python3-dev python3-venv gcc busybox-static \
	umoci skopeo squashfuse squashfs-tools fuse-overlayfs e2fsprogs attr acl rsync docker-registry podman runc
# Another apt or dpkg running (unattended-upgrades, a second terminal): wait for its lock
# instead of failing at once.
APT_WAIT := -o DPkg::Lock::Timeout=600
SBIN_TOOLS := mount.ctrfs umount.fuse.ctrfs fsck.ctrfs mkfs.ctrfs

.PHONY: deps apt-deps test demo install bench FORCE

deps: apt-deps $(VENV)/.installed

# dpkg first, so a machine that has everything never calls apt-get (nor needs the network).
apt-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get $(APT_WAIT) update && \
		DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y --no-install-recommends $$missing; \
	fi

# Editable on purpose: a regular install plus anything that puts the repository root on
# sys.path shadows the installed ctrfs with ./ctrfs (format/, fsck/, mkfs/ map into it).
# Strict mode: a link tree under build/ on a plain path entry.  The default mode's import
# finder costs ~15 ms (pathlib) at every tool start, a third of a container start; a link
# tree misses new modules, so the list of modules is a prerequisite.
MODULES := $(VENV)/.modules
$(MODULES): FORCE
	@mkdir -p $(VENV); find ctrfs format fsck mkfs -name '*.py' | sort > $@.new; \
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(VENV)/.installed: pyproject.toml $(MODULES) | apt-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=strict
	touch $@

test: deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: install
	sh demo/demo.sh

install: deps
	for t in $(SBIN_TOOLS); do ln -sf $(CURDIR)/$(VENV)/bin/$$t /sbin/$$t; done

# The corpus (bench/corpus.py: debootstrap, umoci, rsync; ~3 GB in $$CTRFS_CORPUS or
# /var/tmp/ctrfs-corpus, built once), then ctrfs against its peers (bench/run.py).
BENCH_APT_PACKAGES := debootstrap rsync erofs-utils
bench: APT_PACKAGES += $(BENCH_APT_PACKAGES)
bench: deps
	$(PY) bench/corpus.py
	$(PY) bench/run.py
