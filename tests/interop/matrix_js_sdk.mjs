// tests/interop/matrix_js_sdk.mjs - matrix-js-sdk@37.5.0 against hs-sim: two users register
// (password + m.login.dummy, after the 401 flows answer), log in, create a room, invite, join,
// sync, send and receive in both directions, typing, receipts and /messages. Proves that hs-sim
// speaks the protocol real clients speak.
//   node matrix_js_sdk.mjs <path to hs-sim>
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { startHsSim, waitFor } from "./hs_common.mjs";

logger.setLevel("error");
const bin = process.argv[2];
if (!bin) {
  console.error("usage: node matrix_js_sdk.mjs <hs-sim>");
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("FAIL: watchdog (60 s)");
  process.exit(1);
}, 60000);

let failures = 0;
function check(cond, what) {
  if (cond) console.log(`ok - ${what}`);
  else {
    failures++;
    console.log(`not ok - ${what}`);
  }
}

const hs = await startHsSim(bin, "js.test");
const clients = [];
try {
  const anon = sdk.createClient({ baseUrl: hs.url });
  const versions = await anon.getVersions();
  check(versions.versions.includes("v1.11"), "GET /versions lists v1.11");

  async function register(username, password) {
    let session;
    try {
      await anon.registerRequest({ username, password });
      check(false, `register ${username}: first call answers 401 with flows`);
    } catch (e) {
      check(e.httpStatus === 401 && Array.isArray(e.data?.flows), `register ${username}: 401 with flows`);
      session = e.data?.session;
    }
    const r = await anon.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
    check(r.user_id === `@${username}:js.test`, `register ${username}: user_id`);
  }
  await register("alice", "alice-pw");
  await register("bob", "bob-pw");
  try {
    await anon.registerRequest({ username: "alice", password: "x", auth: { type: "m.login.dummy" } });
    check(false, "second registration of alice fails");
  } catch (e) {
    check(e.errcode === "M_USER_IN_USE", "second registration of alice: M_USER_IN_USE");
  }
  try {
    await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "wrong" });
    check(false, "login with a wrong password fails");
  } catch (e) {
    check(e.httpStatus === 403 && e.errcode === "M_FORBIDDEN", "login with a wrong password: 403 M_FORBIDDEN");
  }

  async function login(user, password) {
    const r = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user }, password });
    check(r.access_token && r.user_id === `@${user}:js.test`, `login ${user}`);
    const c = sdk.createClient({ baseUrl: hs.url, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id });
    clients.push(c);
    return c;
  }
  const alice = await login("alice", "alice-pw");
  const bob = await login("bob", "bob-pw");
  check((await alice.whoami()).user_id === "@alice:js.test", "whoami alice");

  function started(c) {
    return new Promise((resolve, reject) => {
      c.on(sdk.ClientEvent.Sync, (state, prev, data) => {
        if (state === "PREPARED") resolve();
        if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
      });
      c.startClient({ initialSyncLimit: 20 });
    });
  }
  await started(alice);
  await started(bob);
  check(true, "both clients synced (PREPARED)");

  const { room_id: roomId } = await alice.createRoom({ name: "interop room", invite: ["@bob:js.test"] });
  check(roomId?.startsWith("!"), "createRoom answers a room id");
  await waitFor("alice sees the room", () => alice.getRoom(roomId));
  check(alice.getRoom(roomId).name === "interop room", "room name from sync");

  await waitFor("bob gets the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
  check(true, "bob sees the invite through /sync");
  await bob.joinRoom(roomId);
  await waitFor("alice sees bob join", () => alice.getRoom(roomId)?.getMember("@bob:js.test")?.membership === "join");
  check(true, "alice sees bob's join through /sync");

  const bodies = (c) => (c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [])
    .filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);
  const sent = await alice.sendTextMessage(roomId, "hello from alice");
  check(sent.event_id?.startsWith("$"), "alice sends: event id");
  await waitFor("bob receives alice's message", () => bodies(bob).includes("hello from alice"));
  check(true, "bob receives alice's message");
  await bob.sendTextMessage(roomId, "hello from bob");
  await waitFor("alice receives bob's message", () => bodies(alice).includes("hello from bob"));
  check(true, "alice receives bob's message");
  check(bodies(alice).filter((b) => b === "hello from alice").length === 1, "alice's own message appears once (local echo matched)");

  await bob.sendTyping(roomId, true, 10000);
  await waitFor("alice sees bob typing", () => alice.getRoom(roomId)?.getMember("@bob:js.test")?.typing);
  check(true, "typing notification reaches alice");

  const ev = alice.getRoom(roomId).getLiveTimeline().getEvents().find((e) => e.getContent().body === "hello from bob");
  await alice.sendReadReceipt(ev);
  await waitFor("bob sees alice's receipt", () => bob.getRoom(roomId)?.getUsersReadUpTo(ev).includes("@alice:js.test"));
  check(true, "read receipt reaches bob");

  const msgs = await alice.createMessagesRequest(roomId, null, 50, sdk.Direction.Backward);
  const texts = msgs.chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body);
  check(texts[0] === "hello from bob" && texts[1] === "hello from alice", "/messages backwards, newest first");

  await alice.setDisplayName("Alice A.");
  check((await bob.getProfileInfo("@alice:js.test")).displayname === "Alice A.", "profile displayname");
} catch (e) {
  failures++;
  console.log(`not ok - exception: ${e.stack ?? e}`);
} finally {
  for (const c of clients) c.stopClient();
  hs.child.kill("SIGTERM");
  clearTimeout(watchdog);
}
console.log(failures ? `FAIL: ${failures} failed` : "PASS");
process.exit(failures ? 1 : 0);
