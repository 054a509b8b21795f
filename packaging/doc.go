// Package packaging holds no code: its tests check what packaging/ ships.
//
// The .deb and .rpm packages of gpumeter and voucher-authority (built by
// packaging/build with nfpm), their systemd units, sysusers.d and
// tmpfiles.d files and maintainer scripts. The tests build the packages
// with the same script an operator runs, inspect them (files, owners,
// modes, conffiles, lintian, rpm flags), install, upgrade, remove and
// purge them in a Debian root made by debootstrap, and check the units
// with systemd-analyze (verify with an empty stderr; security exposure
// at most 2.5).
package packaging
