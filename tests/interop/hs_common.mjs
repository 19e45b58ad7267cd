// tests/interop/hs_common.mjs - helpers for the Matrix interop scripts: start hs-sim on a free
// port and wait with a deadline. hs-sim prints "port <n>" once it listens.
import { spawn } from "node:child_process";

export function startHsSim(bin, serverName, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [...args, "0", serverName], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => reject(new Error("hs-sim did not print its port within 5 s")), 5000);
    child.on("error", reject);
    child.stdout.on("data", (d) => {
      out += d.toString();
      const m = out.match(/port (\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), url: `http://127.0.0.1:${m[1]}` });
      }
    });
  });
}

// Resolves when check() returns a truthy value (polled every 50 ms), rejects after ms.
export async function waitFor(what, check, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
