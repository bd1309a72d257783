import assert from "node:assert/strict";
import { createPortMapper, type PortMapperOptions } from "../../lib/platform/upnp.ts";
import { PortMappingError, type PortMappingErrorCode } from "../../lib/errors.ts";
import { description, type Igd, type IgdOptions, soapFault, startIgd } from "../reach/_igd.ts";

// Everything runs on 127.0.0.1: the fake gateway's SSDP socket and HTTP
// server, and the client's unicast search (never the multicast group).

/** The bound each step gets in these tests; a bad answer must fail within it. */
const TIMEOUT_MS = 300;
/** Slack for a test's timer on a loaded machine. */
const SLACK_MS = 1_500;

const isPublic = (ip: string) => ip.startsWith("198.18.") || ip === "203.0.113.7";

async function withIgd(
  options: Partial<IgdOptions>,
  fn: (igd: Igd, mapper: ReturnType<typeof createPortMapper>) => Promise<void>,
  mapperOptions: Partial<PortMapperOptions> = {},
): Promise<void> {
  const igd = await startIgd({
    listen: "127.0.0.1",
    externalIp: "198.18.0.21",
    ssdpPort: 0,
    ...options,
  });
  try {
    const mapper = createPortMapper({
      gateway: `127.0.0.1:${igd.ssdpPort}`,
      isPublic,
      timeoutMs: TIMEOUT_MS,
      ...mapperOptions,
    });
    await fn(igd, mapper);
  } finally {
    await igd.close();
  }
}

async function rejectsWith(
  task: Promise<unknown>,
  code: PortMappingErrorCode,
  message: RegExp,
  withinMs = TIMEOUT_MS * 4 + SLACK_MS,
): Promise<PortMappingError> {
  const started = performance.now();
  let caught: unknown;
  await task.catch((err) => caught = err);
  const took = performance.now() - started;
  assert.ok(caught instanceof PortMappingError, `expected a PortMappingError, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  assert.match(caught.message, message);
  assert.ok(took < withinMs, `took ${Math.round(took)} ms`);
  return caught;
}

Deno.test("discover() finds the gateway by unicast SSDP and reads its control URL", async () => {
  await withIgd({}, async (igd, mapper) => {
    const gateway = await mapper.discover();
    assert.equal(gateway.location, igd.location);
    assert.equal(gateway.controlUrl, new URL("/ctl/IPConn", igd.location).href);
    assert.equal(gateway.serviceType, "urn:schemas-upnp-org:service:WANIPConnection:1");
    assert.equal(gateway.localAddress, "127.0.0.1");
    assert.equal(await mapper.discover(), gateway, "found once");
  });
});

Deno.test("discover() picks the connection service from descriptions routers send", async (t) => {
  const cases: [string, (control: string) => string, string, string][] = [
    [
      "WANIPConnection:2 before 1",
      (c) =>
        description(c, "urn:schemas-upnp-org:service:WANIPConnection:1").replace(
          "</serviceList></device></deviceList>",
          `<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>` +
            `<controlURL>/ctl/v2</controlURL></service></serviceList></device></deviceList>`,
        ),
      "urn:schemas-upnp-org:service:WANIPConnection:2",
      "/ctl/v2",
    ],
    [
      "a PPP connection",
      (c) => description(c, "urn:schemas-upnp-org:service:WANPPPConnection:1"),
      "urn:schemas-upnp-org:service:WANPPPConnection:1",
      "/ctl/IPConn",
    ],
    [
      "a URLBase, prefixes, a comment, CDATA and entities",
      (c) =>
        `\ufeff<?xml version="1.0"?><!-- a router --><d:root xmlns:d="urn:x">` +
        `<d:URLBase>http://127.0.0.1:1/base/</d:URLBase><d:device><d:serviceList>` +
        `<d:service><d:serviceType><![CDATA[urn:schemas-upnp-org:service:WANIPConnection:1]]>` +
        `</d:serviceType><d:controlURL>ctl?a=1&amp;b=${c.length}</d:controlURL></d:service>` +
        `</d:serviceList></d:device></d:root>`,
      "urn:schemas-upnp-org:service:WANIPConnection:1",
      "http://127.0.0.1:1/base/ctl?a=1&b=11",
    ],
  ];
  for (const [name, xml, type, control] of cases) {
    await t.step(name, async () => {
      await withIgd({ description: xml }, async (igd, mapper) => {
        const gateway = await mapper.discover();
        assert.equal(gateway.serviceType, type);
        assert.equal(gateway.controlUrl, new URL(control, igd.location).href);
      }, { interfaceAddress: "127.0.0.1" });
    });
  }
});

Deno.test("map() adds a TCP mapping to this machine, and release() deletes it once", async () => {
  await withIgd({}, async (igd, mapper) => {
    const mapping = await mapper.map({ internalPort: 4001, leaseSeconds: 120 });
    assert.equal(mapping.externalIp, "198.18.0.21");
    assert.equal(mapping.externalPort, 4001);
    assert.equal(mapping.internalClient, "127.0.0.1");
    assert.equal(mapping.leaseSeconds, 120);
    assert.deepEqual(igd.mappings.get("TCP:4001"), {
      externalPort: 4001,
      protocol: "TCP",
      internalClient: "127.0.0.1",
      internalPort: 4001,
      description: "DIM",
      leaseSeconds: 120,
    });
    igd.externalIp = "203.0.113.7";
    await mapping.renew();
    assert.equal(mapping.externalIp, "203.0.113.7", "renew() reads the address again");
    assert.equal(igd.mappings.size, 1);
    await mapping.release();
    assert.equal(igd.mappings.size, 0);
    await mapping.release();
    await assert.rejects(mapping.renew(), PortMappingError);
  });
});

Deno.test("map() takes another external port when the one asked for is taken", async () => {
  let refused = 0;
  const conflict = (_: Request, action: string | undefined) =>
    action === "AddPortMapping" && refused++ === 0 ? soapFault(718, "Conflict") : undefined;
  await withIgd({ respond: conflict }, async (igd, mapper) => {
    const mapping = await mapper.map({ internalPort: 4001 });
    assert.notEqual(mapping.externalPort, 4001);
    assert.ok(igd.mappings.has(`TCP:${mapping.externalPort}`));
    await mapping.release();
    // A port asked for explicitly is not changed.
    refused = 0;
    const err = await rejectsWith(
      mapper.map({ internalPort: 4001, externalPort: 5000 }),
      "refused",
      /AddPortMapping: the gateway refused \(HTTP 500 error 718 Conflict\)/,
    );
    assert.equal(err.upnpCode, 718);
    assert.equal(igd.mappings.size, 0);
  });
});

Deno.test("map() takes a permanent lease from a gateway that allows no other", async () => {
  await withIgd({
    respond: (_, action, _closing, body) => {
      if (action !== "AddPortMapping") return undefined;
      if (!body.includes("<NewLeaseDuration>0<")) {
        return soapFault(725, "OnlyPermanentLeasesSupported");
      }
    },
  }, async (igd, mapper) => {
    const mapping = await mapper.map({ internalPort: 4001 });
    assert.equal(mapping.leaseSeconds, 0);
    assert.equal(igd.mappings.get("TCP:4001")?.leaseSeconds, 0);
    await mapping.release();
  });
});

Deno.test("map() refuses a gateway whose external address is not public, and maps nothing", async () => {
  await withIgd({ externalIp: "10.0.0.2" }, async (igd, mapper) => {
    await rejectsWith(
      mapper.map({ internalPort: 4001 }),
      "not-public",
      /10\.0\.0\.2 is not public/,
    );
    assert.equal(igd.mappings.size, 0);
  });
  // The rule is the caller's: a reserved address it counts as public is fine.
  await withIgd({ externalIp: "198.18.0.21" }, async (_, mapper) => {
    const mapping = await mapper.map({ internalPort: 4001 });
    await mapping.release();
  });
});

Deno.test("bad SSDP answers are ignored and the search ends within its bound", async (t) => {
  const answers: [string, (location: string) => string | Uint8Array][] = [
    ["garbage", () => new Uint8Array([0xff, 0xfe, 0, 1])],
    ["not 200", (l) => `HTTP/1.1 404 Not Found\r\nLOCATION: ${l}\r\n\r\n`],
    ["no LOCATION", () => "HTTP/1.1 200 OK\r\nST: x\r\n\r\n"],
    [
      "a LOCATION on another host",
      (l) => `HTTP/1.1 200 OK\r\nLOCATION: ${l.replace("127.0.0.1", "127.0.0.2")}\r\n\r\n`,
    ],
    [
      "an https LOCATION",
      (l) => `HTTP/1.1 200 OK\r\nLOCATION: ${l.replace("http:", "https:")}\r\n\r\n`,
    ],
    ["oversized", (l) => `HTTP/1.1 200 OK\r\nLOCATION: ${l}\r\nX: ${"a".repeat(4000)}\r\n\r\n`],
  ];
  for (const [name, answer] of answers) {
    await t.step(name, async () => {
      await withIgd({ ssdpAnswer: answer }, async (_, mapper) => {
        await rejectsWith(
          mapper.discover(),
          "no-gateway",
          /none answered.*unusable answers ignored/,
        );
      });
    });
  }
  await t.step("silence", async () => {
    const mapper = createPortMapper({ gateway: "127.0.0.1:9", isPublic, timeoutMs: TIMEOUT_MS });
    await rejectsWith(mapper.discover(), "no-gateway", /none answered at 127\.0\.0\.1:9/);
  });
});

Deno.test("bad device descriptions fail clearly", async (t) => {
  const cases: [string, string, PortMappingErrorCode, RegExp][] = [
    ["not XML", "hello", "malformed", /text outside the root/],
    ["unclosed", "<root><device>", "malformed", /unclosed/],
    ["mismatched", "<root><a></b></root>", "malformed", /mismatched end tag/],
    ["a DOCTYPE", '<!DOCTYPE root [<!ENTITY x "y">]><root/>', "malformed", /document type/],
    ["an unknown entity", "<root>&x;</root>", "malformed", /unknown entity/],
    ["two roots", "<root/><root/>", "malformed", /second root/],
    ["too deep", "<a>".repeat(40) + "</a>".repeat(40), "malformed", /too deep/],
    ["too many elements", `<root>${"<a/>".repeat(5000)}</root>`, "malformed", /too many elements/],
    ["no WAN service", "<root><device/></root>", "malformed", /no WAN connection service/],
    [
      "a control URL on another host",
      description("http://127.0.0.2/ctl"),
      "malformed",
      /not on the gateway's host/,
    ],
    ["oversized", `<root>${" ".repeat(200 * 1024)}</root>`, "too-large", /over 131072 bytes/],
  ];
  for (const [name, xml, code, message] of cases) {
    await t.step(name, async () => {
      await withIgd({ description: () => xml }, async (_, mapper) => {
        await rejectsWith(mapper.discover(), code, message);
      });
    });
  }
  await t.step("not UTF-8", async () => {
    await withIgd({
      respond: (r) =>
        r.method === "GET" ? new Response(new Uint8Array([0x3c, 0xff, 0x3e])) : undefined,
    }, async (_, mapper) => {
      await rejectsWith(mapper.discover(), "malformed", /not UTF-8/);
    });
  });
  await t.step("HTTP 404", async () => {
    await withIgd({
      respond: (r) => r.method === "GET" ? new Response("no", { status: 404 }) : undefined,
    }, async (_, mapper) => {
      await rejectsWith(mapper.discover(), "malformed", /HTTP 404/);
    });
  });
});

Deno.test("bad SOAP answers fail clearly", async (t) => {
  const cases: [string, string, Response | (() => Response), PortMappingErrorCode, RegExp][] = [
    [
      "an external address that is not one",
      "GetExternalIPAddress",
      () =>
        new Response(
          `<s:Envelope xmlns:s="x"><s:Body><u:GetExternalIPAddressResponse>` +
            `<NewExternalIPAddress>1.2.3</NewExternalIPAddress></u:GetExternalIPAddressResponse>` +
            `</s:Body></s:Envelope>`,
        ),
      "malformed",
      /external address is "1\.2\.3"/,
    ],
    [
      "no response element",
      "GetExternalIPAddress",
      () => new Response(`<Envelope><Body/></Envelope>`),
      "malformed",
      /no GetExternalIPAddressResponse/,
    ],
    [
      "a fault",
      "AddPortMapping",
      () => soapFault(606, "Action not authorized"),
      "refused",
      /error 606 Action not authorized/,
    ],
    [
      "an unreadable fault",
      "AddPortMapping",
      () => new Response("<<<", { status: 500 }),
      "refused",
      /HTTP 500\)/,
    ],
    [
      "oversized",
      "AddPortMapping",
      () => new Response("x".repeat(64 * 1024)),
      "too-large",
      /over 16384 bytes/,
    ],
  ];
  for (const [name, action, response, code, message] of cases) {
    await t.step(name, async () => {
      await withIgd({
        respond: (_, a) => a === action ? (response as () => Response)() : undefined,
      }, async (igd, mapper) => {
        await rejectsWith(mapper.map({ internalPort: 4001 }), code, message);
        assert.equal(igd.mappings.size, 0);
      });
    });
  }
});

Deno.test("a gateway that stalls fails within the bound, whatever it stalls on", async (t) => {
  const stall = (closing: AbortSignal) =>
    new Promise<Response>((resolve) =>
      closing.addEventListener("abort", () => resolve(new Response("late")), { once: true })
    );
  const dribble = (closing: AbortSignal) =>
    new Response(
      new ReadableStream({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode("<root>"));
          await new Promise((r) => closing.addEventListener("abort", r, { once: true }));
          controller.close();
        },
      }),
    );
  const cases: [string, NonNullable<IgdOptions["respond"]>, RegExp][] = [
    [
      "the description's headers",
      (r, _, c) => r.method === "GET" ? stall(c) : undefined,
      /read the gateway's description: no answer within 300 ms/,
    ],
    [
      "the description's body",
      (r, _, c) => r.method === "GET" ? dribble(c) : undefined,
      /no answer within 300 ms/,
    ],
    [
      "a SOAP answer",
      (_, a, c) => a === "GetExternalIPAddress" ? stall(c) : undefined,
      /call GetExternalIPAddress: no answer within 300 ms/,
    ],
  ];
  for (const [name, respond, message] of cases) {
    await t.step(name, async () => {
      await withIgd({ respond }, async (_, mapper) => {
        await rejectsWith(mapper.map({ internalPort: 4001 }), "timeout", message);
      });
    });
  }
});

Deno.test("map() stops at once when its caller or the mapper's owner aborts", async () => {
  const owner = new AbortController();
  await withIgd({
    respond: (_, a, closing) =>
      a === "GetExternalIPAddress"
        ? new Promise<Response>((r) =>
          closing.addEventListener("abort", () => r(new Response("")), { once: true })
        )
        : undefined,
  }, async (_, mapper) => {
    const caller = new AbortController();
    const mapping = mapper.map({ internalPort: 4001, signal: caller.signal });
    setTimeout(() => caller.abort(new Error("caller gave up")), 50);
    await assert.rejects(mapping, /caller gave up/);
    const owned = mapper.map({ internalPort: 4001 });
    setTimeout(() => owner.abort(new Error("node stopping")), 50);
    await assert.rejects(owned, /node stopping/);
  }, { signal: owner.signal, timeoutMs: 10_000 });
});

Deno.test("createPortMapper() and map() reject bad arguments before sending anything", async () => {
  assert.throws(() => createPortMapper({ gateway: "router.local", isPublic }), TypeError);
  assert.throws(() => createPortMapper({ gateway: "127.0.0.1:99999", isPublic }), TypeError);
  assert.throws(() => createPortMapper({ interfaceAddress: "::1", isPublic }), TypeError);
  const mapper = createPortMapper({ gateway: "127.0.0.1:9", isPublic });
  await assert.rejects(mapper.map({ internalPort: 0 }), RangeError);
  await assert.rejects(mapper.map({ internalPort: 1, externalPort: 70_000 }), RangeError);
  await assert.rejects(mapper.map({ internalPort: 1, leaseSeconds: -1 }), RangeError);
});
