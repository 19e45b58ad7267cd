// tests/e2e/scenario.mjs - steps a user of the bridge takes, shared by the e2e tests and the demo:
// open the management room with the bot, log in by QR (the simulated phone scans what the bot
// posted) or by pairing code, and find the portal a WhatsApp contact's message created.
import { waitFor } from './stack.mjs';

export const BOT = (domain) => `@whatsappbot:${domain}`;

export function fromBot(user, room, pred = () => true) {
  return (e) => e.room_id === room && e.sender === user.botId && e.type === 'm.room.message' && pred(e);
}

// Starts a DM with the bot; resolves with the room id once the bot has greeted.
export async function openManagementRoom(user, domain) {
  user.botId = BOT(domain);
  const room = await user.createRoom({ invite: [user.botId], is_direct: true, preset: 'trusted_private_chat' });
  await user.waitEvent('the bot greets in the management room',
    fromBot(user, room, (e) => /management room/.test(e.content.body)));
  return room;
}

// `login qr`: the bot posts the QR as an image whose body is the code; the phone scans it.
export async function loginQr(user, room, wa, phone) {
  const since = user.events.length;
  await user.send(room, 'login qr');
  const qr = await user.waitEvent('the QR image from the bot',
    (e) => user.events.indexOf(e) >= since && fromBot(user, room, (x) => x.content.msgtype === 'm.image')(e));
  if (!qr.content.url?.startsWith('mxc://')) throw new Error('the QR image has no mxc:// url');
  const r = await wa.admin('POST', '/admin/scan', { phone, qr: qr.content.body });
  if (r.status !== 200) throw new Error(`scan failed: ${JSON.stringify(r.json)}`);
  await user.waitEvent('the login success notice',
    fromBot(user, room, (e) => e.content.body === `Successfully logged in as +${phone}`), 30000);
  await companionReady(wa, phone);
  return qr;
}

// `login phone N`: the bot shows the code; the user types it on the phone.
export async function loginPhone(user, room, wa, phone) {
  const since = user.events.length;
  await user.send(room, `login phone +${phone}`);
  const ev = await user.waitEvent('the pairing code',
    (e) => user.events.indexOf(e) >= since && fromBot(user, room, (x) => /pairing code: /.test(x.content.body))(e));
  const code = ev.content.body.match(/pairing code: (\S+)/)[1];
  const r = await wa.admin('POST', '/admin/pair-code', { phone, code });
  if (r.status !== 200) throw new Error(`pair-code failed: ${JSON.stringify(r.json)}`);
  await user.waitEvent('the login success notice',
    fromBot(user, room, (e) => e.content.body === `Successfully logged in as +${phone}`), 30000);
  await companionReady(wa, phone);
  return code;
}

// Waits until the account's companion device is online with its prekeys uploaded (before that,
// senders cannot open a session to it).
export async function companionReady(wa, phone) {
  await waitFor(`the companion of +${phone} online with prekeys`, async () => {
    const st = await wa.admin('GET', '/admin/state');
    const acc = st.json.accounts?.find((a) => a.phone === phone);
    return acc?.devices?.some((d) => d.id !== 0 && d.online && d.prekeys > 0);
  }, 30000);
}

// Waits for an invite to a room not seen before, joins it, returns its id.
export async function joinNextInvite(user, known = new Set()) {
  const room = await waitFor('an invite to a portal room', () => [...user.invites].find((r) => !known.has(r)), 30000);
  known.add(room);
  await user.join(room);
  return room;
}

// Messages a simulated phone received (wa-sim /admin/messages).
export async function phoneMessages(wa, phone, from = 0) {
  const r = await wa.admin('GET', `/admin/messages?phone=${phone}&from=${from}`);
  return r.json.messages ?? [];
}

// A member's membership in a room as user sees the room's state (undefined when it has none).
export async function membershipOf(user, room, mxid) {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state/m.room.member/${encodeURIComponent(mxid)}`;
  return (await user.req('GET', path).catch(() => null))?.membership;
}

// The phone of owner creates a group with members; user (logged in as one of them) joins its
// portal. Returns { group, portal }; check(ok, what) reports the creation.
export async function groupPortal(user, wa, check, { owner, subject, members, known }) {
  const cr = await wa.admin('POST', '/admin/group/create', { phone: owner, subject, members });
  check(cr.status === 200, `the owner's phone created a group (${cr.json.jid})`);
  const portal = await joinNextInvite(user, known);
  return { group: cr.json.jid, portal };
}
