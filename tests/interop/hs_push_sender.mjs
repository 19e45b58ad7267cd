// tests/interop/hs_push_sender.mjs - the matrix-js-sdk side of test_mx_push: a real client on
// hs-sim whose events must reach the bridge's appservice endpoint.
//   node hs_push_sender.mjs <homeserver url> <ghost mxid>
// Registers and logs in "carol", creates a room inviting the ghost, sends "before-join" (which
// must NOT be pushed: no namespaced user has joined yet), waits until the ghost joined, sends
// "hello from js" and a typing notice, then exits 0. Protocol lines on stdout start with "@@ ".
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { waitFor } from "./hs_common.mjs";

logger.setLevel("error");
const [url, ghost] = process.argv.slice(2);
if (!url || !ghost) {
  console.error("usage: node hs_push_sender.mjs <hs url> <ghost mxid>");
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("hs_push_sender: watchdog (40 s)");
  process.exit(1);
}, 40000);
const say = (line) => process.stdout.write(`@@ ${line}\n`);

try {
  const anon = sdk.createClient({ baseUrl: url });
  await anon.registerRequest({ username: "carol", password: "carol-pw", auth: { type: "m.login.dummy" } });
  const login = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: "carol" }, password: "carol-pw" });
  const carol = sdk.createClient({ baseUrl: url, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
  await new Promise((resolve, reject) => {
    carol.on(sdk.ClientEvent.Sync, (state, prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
    });
    carol.startClient({ initialSyncLimit: 10 });
  });
  const { room_id: roomId } = await carol.createRoom({ name: "push test", invite: [ghost], is_direct: true });
  await carol.sendTextMessage(roomId, "before-join");
  say(`room ${roomId}`);
  await waitFor("the ghost to join", () => carol.getRoom(roomId)?.getMember(ghost)?.membership === "join", 20000);
  const sent = await carol.sendTextMessage(roomId, "hello from js");
  await carol.sendTyping(roomId, true, 5000);
  say(`sent ${sent.event_id}`);
  carol.stopClient();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(`hs_push_sender: ${e.stack ?? e}`);
  process.exit(1);
}
