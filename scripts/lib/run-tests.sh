# shellcheck shell=bash
# Sourced by scripts/cross-test: how a set of tests is run.
#
# run_tests HARNESS CARGO ARGS...   runs the tests ARGS select (`--workspace`, `-p X`,
#   `--target T`, ...) with HARNESS (what test_harness printed); never stops at the
#   first failure. Doc tests are not part of it under nextest (the cross runs never ran
#   them; the host, which runs them, keeps `cargo test`: scripts/test says why).
#
# Why nextest: it runs every test in a process of its own, several at a time across all
# test binaries, instead of one test binary after another with the tests as threads of
# one process. Under qemu-user that cut the armv7 run from 1134 s to 352 s and the aarch64 run
# from 780 s to about 6 min (2 cores, 2026-12-02),
# and .config/nextest.toml gives every test a time limit, so one stuck test fails,
# naming itself, instead of holding CI until its own limit.
#
# XPLUGIN_TEST_HARNESS=nextest|libtest chooses; the default takes nextest if
# `CARGO nextest --version` works. Extra arguments for the harness: XPLUGIN_TEST_ARGS
# (words, e.g. "--test-threads 1"; after `--` they are test-name filters for both).
run_tests() {
    local harness=$1 cargo=$2
    shift 2
    # XPLUGIN_TEST_ARGS is a list of words on purpose, hence unquoted.
    if [ "$harness" = nextest ]; then
        # shellcheck disable=SC2086
        "$cargo" nextest run "$@" --no-fail-fast ${XPLUGIN_TEST_ARGS:-}
    else
        # shellcheck disable=SC2086
        "$cargo" test "$@" --no-fail-fast ${XPLUGIN_TEST_ARGS:-}
    fi
}

# test_harness CARGO: prints nextest or libtest (what run_tests will use).
test_harness() {
    case "${XPLUGIN_TEST_HARNESS:-auto}" in
    libtest) echo libtest ;;
    nextest)
        if ! "$1" nextest --version >/dev/null 2>&1; then
            echo "run-tests: XPLUGIN_TEST_HARNESS=nextest but '$1 nextest' does not run: install it (cargo install cargo-nextest --locked) or unset XPLUGIN_TEST_HARNESS" >&2
            return 1
        fi
        echo nextest ;;
    auto)
        if "$1" nextest --version >/dev/null 2>&1; then echo nextest; else echo libtest; fi ;;
    *)
        echo "run-tests: XPLUGIN_TEST_HARNESS=${XPLUGIN_TEST_HARNESS} is neither nextest nor libtest" >&2
        return 1 ;;
    esac
}
