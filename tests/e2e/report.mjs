// tests/e2e/report.mjs - what every end-to-end test prints and how it exits.
// A test's report: `check` prints an ok / FAIL line for each assertion, `failed` one for an
// exception that ended the test, and `finish` the summary, then exits (1 when anything failed).
export function report() {
  let failures = 0;
  return {
    check: (ok, what) => { console.log(`${ok ? 'ok' : 'FAIL'} - ${what}`); if (!ok) failures++; },
    failed: (e) => { console.log(`FAIL - ${e.stack}`); failures++; },
    finish: () => {
      console.log(failures ? `${failures} failure(s)` : 'all passed');
      process.exit(failures ? 1 : 0);
    },
  };
}
