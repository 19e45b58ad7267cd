// bench/bench_setup.mjs - the set-up the whole-bridge benchmarks share: the stack (PostgreSQL
// database given, hs-sim, wa-sim, wabridge) with one Matrix user logged in by QR and one DM portal
// per WhatsApp contact, each opened by a first message from the contact.
import { startStack, MxUser, DOMAIN } from '../tests/e2e/stack.mjs';
import { openManagementRoom, loginQr, joinNextInvite } from '../tests/e2e/scenario.mjs';

// bins: { wabridge, hsSim, waSim }; user: { phone, lid } of the logged-in account; contacts:
// phone numbers, their LIDs counted from lidBase. Resolves { stack, alice, mgmt, portals }.
export async function startBenchStack({ bins, pg, user, contacts, lidBase }) {
  const stack = await startStack({
    bins, pg,
    accounts: [{ phone: user.phone, lid: user.lid, name: 'Alice' },
      ...contacts.map((p, i) => ({ phone: p, lid: String(lidBase + i), name: `Contact${i}` }))],
  });
  const { wa, hs } = stack;
  try {
    const alice = await MxUser.register(hs.url, 'alice');
    const mgmt = await openManagementRoom(alice, DOMAIN);
    await loginQr(alice, mgmt, wa, user.phone);
    const portals = [];
    const known = new Set([mgmt]);
    for (const p of contacts) {
      await wa.admin('POST', '/admin/send', { phone: p, to: `${user.phone}@s.whatsapp.net`, text: 'hello' });
      portals.push(await joinNextInvite(alice, known));
    }
    return { stack, alice, mgmt, portals };
  } catch (e) {
    await stack.stop();
    throw e;
  }
}
