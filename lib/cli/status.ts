/**
 * `dim status`: goes online and reports the node's health — peers,
 * addresses, DHT routing table, and messages still waiting in the outbox.
 *
 * @module
 */
import type { Context } from "./context.ts";

/**
 * Joins the network, publishes the contact card, prints what the node sees
 * and exits.
 *
 * @param ctx The command's context.
 * @returns The exit code.
 * @throws {CliError} If there is no identity or no bootstrap node answers.
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Opens a DIM node.
 * Deno.exitCode = await main(["status", "--json"]);
 * ```
 */
export async function statusCommand(ctx: Context): Promise<number> {
  const bootstrap = await ctx.bootstrap();
  const messenger = await ctx.openMessenger();
  let report;
  try {
    const node = messenger.node;
    const outbox = messenger.profile.outbox();
    report = {
      id: messenger.id,
      displayName: messenger.profile.displayName,
      peerId: node.peerId,
      addresses: messenger.addresses,
      bootstrap,
      connections: node.connections,
      peers: node.peers.length,
      routingTable: node.routingTableSize,
      outbox: outbox.length,
      outboxStored: outbox.filter((m) => m.state === "stored").length,
      contacts: messenger.profile.contacts().length,
      keyChanged: messenger.profile.contacts().filter((c) => c.keyChanged).map((c) => c.name),
    };
  } finally {
    await messenger.stop();
  }
  if (ctx.json) {
    ctx.outJson(report);
    return 0;
  }
  ctx.out(`ID:             ${report.id} (${report.displayName})`);
  ctx.out(`Peer ID:        ${report.peerId}`);
  ctx.out(`Listening on:   ${report.addresses[0] ?? "(nothing)"}`);
  for (const a of report.addresses.slice(1)) ctx.out(`                ${a}`);
  ctx.out(`Bootstrap:      ${report.bootstrap[0] ?? "(none configured)"}`);
  for (const a of report.bootstrap.slice(1)) ctx.out(`                ${a}`);
  ctx.out(`Peers:          ${report.peers} connected (${report.connections} connections)`);
  ctx.out(`DHT:            ${report.routingTable} peers in the routing table`);
  ctx.out(
    `Outbox:         ${report.outbox} waiting for acknowledgement` +
      (report.outboxStored > 0 ? ` (${report.outboxStored} stored in the network)` : ""),
  );
  ctx.out(
    `Contacts:       ${report.contacts}` +
      (report.keyChanged.length > 0
        ? ` (⚠ KEYS CHANGED: ${report.keyChanged.join(", ")} — run dim contact verify)`
        : ""),
  );
  return 0;
}
