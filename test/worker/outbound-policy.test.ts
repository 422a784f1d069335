import { EventEmitter, once } from "node:events";
import net, { type AddressInfo, type LookupFunction } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  createOutboundPolicy,
  DestinationBlockedError,
  nonPublicReason,
  type OutboundPolicy,
  type OutboundPolicyOptions,
  parseHostPattern,
  parseIp,
} from "../../src/worker/outbound-policy.js";

type Address = { address: string; family: number };

/** A resolver that answers from a table and remembers what it was asked. */
function fakeResolver(table: Record<string, string[]>) {
  const asked: string[] = [];
  const resolve = async (hostname: string): Promise<Address[]> => {
    asked.push(hostname);
    return (table[hostname] ?? []).map((address) => ({
      address,
      family: net.isIP(address),
    }));
  };
  return { resolve, asked };
}

function policyWith(options: Partial<OutboundPolicyOptions> = {}): OutboundPolicy {
  return createOutboundPolicy({ allowed: [], denied: [], ...options });
}

type LookupAnswer = { err: NodeJS.ErrnoException | null; address: unknown; family?: number };

/** Calls the policy's lookup the way net.connect does and collects what its callback got. */
function lookup(
  policy: OutboundPolicy,
  hostname: string,
  options?: { all?: boolean; family?: number },
): Promise<LookupAnswer> {
  return new Promise((resolve) => {
    const cb = (err: NodeJS.ErrnoException | null, address: unknown, family?: number) =>
      resolve({ err, address, family });
    const fn = policy.lookup as unknown as (...args: unknown[]) => void;
    if (options === undefined) fn(hostname, cb);
    else fn(hostname, options, cb);
  });
}

describe("nonPublicReason", () => {
  it.each([
    // IPv4
    ["0.0.0.0", /this network.*0\.0\.0\.0\/8/],
    ["0.255.255.255", /this network/],
    ["10.0.0.0", /private \(10\.0\.0\.0\/8\)/],
    ["10.255.255.255", /private \(10\.0\.0\.0\/8\)/],
    ["172.16.0.1", /private \(172\.16\.0\.0\/12\)/],
    ["172.31.255.255", /private \(172\.16\.0\.0\/12\)/],
    ["192.168.0.1", /private \(192\.168\.0\.0\/16\)/],
    ["192.168.255.255", /private \(192\.168\.0\.0\/16\)/],
    ["127.0.0.1", /^loopback \(127\.0\.0\.0\/8\)$/],
    ["127.255.255.254", /^loopback/],
    ["169.254.0.1", /link-local \(169\.254\.0\.0\/16/],
    ["169.254.169.254", /link-local.*cloud metadata/],
    ["100.64.0.1", /CGNAT \(100\.64\.0\.0\/10\)/],
    ["100.127.255.255", /CGNAT/],
    ["224.0.0.1", /multicast \(224\.0\.0\.0\/4\)/],
    ["239.255.255.250", /multicast/],
    ["255.255.255.255", /broadcast/],
    ["240.0.0.1", /reserved/],
    ["192.0.0.8", /IETF protocol assignment/],
    ["192.0.2.1", /documentation/],
    ["198.51.100.7", /documentation/],
    ["203.0.113.9", /documentation/],
    ["198.18.0.1", /benchmarking/],
    ["192.88.99.1", /6to4 relay/],
    // IPv6
    ["::1", /^IPv6 loopback/],
    ["0:0:0:0:0:0:0:1", /^IPv6 loopback/],
    ["::", /^unspecified/],
    ["fc00::1", /unique local \(fc00::\/7\)/],
    ["fd00:ec2::254", /unique local/],
    ["fdff:ffff::1", /unique local/],
    ["fe80::1", /link-local \(fe80::\/10\)/],
    ["fe80::1%eth0", /link-local \(fe80::\/10\)/],
    ["febf:ffff::1", /link-local \(fe80::\/10\)/],
    ["fec0::1", /site-local/],
    ["ff02::1", /multicast \(ff00::\/8\)/],
    ["2001:db8::1", /documentation/],
    ["100::1", /discard-only/],
    ["64:ff9b:1::a9fe:a9fe", /local-use NAT64/],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", /Teredo/],
    // IPv6 forms that carry a non-public IPv4 address
    ["::ffff:127.0.0.1", /^IPv4-mapped loopback/],
    ["::ffff:7f00:1", /^IPv4-mapped loopback/],
    ["0:0:0:0:0:ffff:7f00:0001", /^IPv4-mapped loopback/],
    ["::FFFF:127.0.0.1", /^IPv4-mapped loopback/],
    ["::ffff:169.254.169.254", /^IPv4-mapped link-local.*cloud metadata/],
    ["::ffff:a9fe:a9fe", /^IPv4-mapped link-local/],
    ["::ffff:10.0.0.1", /^IPv4-mapped private/],
    ["::ffff:0:0", /^IPv4-mapped "this network"/],
    ["::ffff:0:127.0.0.1", /^IPv4-translated loopback/],
    ["::127.0.0.1", /^IPv4-compatible loopback/],
    ["::7f00:1", /^IPv4-compatible loopback/],
    ["::a9fe:a9fe", /^IPv4-compatible link-local/],
    ["64:ff9b::a9fe:a9fe", /^NAT64 link-local.*cloud metadata/],
    ["64:ff9b::127.0.0.1", /^NAT64 loopback/],
    ["2002:7f00:1::", /^6to4 loopback/],
    ["2002:a9fe:a9fe::1", /^6to4 link-local/],
    ["2002:c0a8:101::", /^6to4 private \(192\.168/],
  ])("refuses %s", (ip, reason) => {
    expect(nonPublicReason(ip)).toMatch(reason);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "192.169.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::ffff:808:808",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "fbff:ffff::1",
  ])("lets public %s pass", (ip) => {
    expect(nonPublicReason(ip)).toBeNull();
  });

  it.each(["example.com", "127.1", "0177.0.0.1", "2130706433", "0x7f.0.0.1", "[::1]", ""])(
    "does not take %j for an address (URL parsing canonicalises such spellings first)",
    (text) => {
      expect(nonPublicReason(text)).toBe("not an IP address");
    },
  );
});

describe("parseIp", () => {
  it("reads dotted-quad IPv4 as 4 bytes", () => {
    expect(parseIp("127.0.0.1")).toEqual([127, 0, 0, 1]);
    expect(parseIp("255.255.255.255")).toEqual([255, 255, 255, 255]);
  });

  it("reads every IPv6 spelling of one address as the same 16 bytes", () => {
    const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    for (const text of [
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::FFFF:7F00:0001",
      "0:0:0:0:0:ffff:127.0.0.1",
      "0000:0000:0000:0000:0000:ffff:7f00:0001",
    ]) {
      expect(parseIp(text), text).toEqual(mapped);
    }
  });

  it("reads short forms, zones and embedded IPv4 tails", () => {
    expect(parseIp("::")).toEqual(new Array(16).fill(0));
    expect(parseIp("::1")).toEqual([...new Array(15).fill(0), 1]);
    expect(parseIp("1::")).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(parseIp("fe80::1%eth0")).toEqual([0xfe, 0x80, ...new Array(13).fill(0), 1]);
    expect(parseIp("::127.0.0.1")).toEqual([...new Array(12).fill(0), 127, 0, 0, 1]);
    expect(parseIp("1:2:3:4:5:6:7:8")).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect(parseIp("2606:4700:4700::1111")).toEqual([
      0x26, 0x06, 0x47, 0, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x11,
    ]);
  });

  it.each([
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "2130706433",
    "256.0.0.1",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:999.0.0.1",
    "[::1]",
    "localhost",
    "",
  ])("answers null for %j", (text) => {
    expect(parseIp(text)).toBeNull();
  });
});

describe("parseHostPattern", () => {
  it("reads names, wildcards, IPs and CIDRs", () => {
    expect(parseHostPattern(" API.Example.com. ")).toEqual({
      kind: "name",
      name: "api.example.com",
      wildcard: false,
    });
    expect(parseHostPattern("*.internal.test")).toEqual({
      kind: "name",
      name: "internal.test",
      wildcard: true,
    });
    expect(parseHostPattern("127.0.0.1")).toEqual({
      kind: "cidr",
      cidr: { bytes: [127, 0, 0, 1], prefix: 32 },
    });
    expect(parseHostPattern("[::1]")).toMatchObject({ kind: "cidr", cidr: { prefix: 128 } });
    expect(parseHostPattern("10.0.0.0/8")).toEqual({
      kind: "cidr",
      cidr: { bytes: [10, 0, 0, 0], prefix: 8 },
    });
    expect(parseHostPattern("fc00::/7")).toMatchObject({ kind: "cidr", cidr: { prefix: 7 } });
  });

  it.each(["10.0.0.0/33", "::1/129", "10.0.0.0/x", "10.0.0.0/", "bad host!", "*.", "a..b"])(
    "throws on %j",
    (entry) => {
      expect(() => parseHostPattern(entry)).toThrow(/not a/);
    },
  );
});

describe("refuse: URLs whose host needs no DNS", () => {
  const policy = policyWith();

  // The WHATWG URL parser canonicalises every IPv4 spelling to a dotted quad and every IPv6 one
  // to its short form before the policy sees it; the table shows that each spelling lands.
  it.each([
    ["http://127.0.0.1/", /^127\.0\.0\.1 is not public: loopback/],
    ["http://2130706433/", /^127\.0\.0\.1 .*loopback/],
    ["http://0177.0.0.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://0x7f.0.0.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://0x7F000001/", /^127\.0\.0\.1 .*loopback/],
    ["http://017700000001/", /^127\.0\.0\.1 .*loopback/],
    ["http://0x7f.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://127.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://127.0.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://127.0.0.1./", /^127\.0\.0\.1 .*loopback/],
    ["http://%31%32%37.0.0.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://①②⑦.⓪.⓪.①/", /^127\.0\.0\.1 .*loopback/],
    ["http://０ｘ７ｆ.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://127。0。0。1/", /^127\.0\.0\.1 .*loopback/],
    ["https://127.0.0.1:8443/x", /^127\.0\.0\.1 .*loopback/],
    ["http://user:pw@127.0.0.1/", /^127\.0\.0\.1 .*loopback/],
    ["http://[::1]/", /^::1 is not public: IPv6 loopback/],
    ["http://[0:0:0:0:0:0:0:1]:8080/", /^::1 .*IPv6 loopback/],
    ["http://[::]/", /^:: .*unspecified/],
    ["http://[::ffff:127.0.0.1]/", /IPv4-mapped loopback/],
    ["http://[::ffff:7f00:1]/", /IPv4-mapped loopback/],
    ["http://[::127.0.0.1]/", /IPv4-compatible loopback/],
    ["http://[64:ff9b::7f00:1]/", /NAT64 loopback/],
    ["http://[2002:7f00:1::]/", /6to4 loopback/],
    ["http://169.254.169.254/latest/meta-data/", /cloud metadata/],
    ["http://2852039166/", /^169\.254\.169\.254 .*cloud metadata/],
    ["http://0xa9fea9fe/", /^169\.254\.169\.254 .*cloud metadata/],
    ["http://0251.0376.0251.0376/", /^169\.254\.169\.254 .*cloud metadata/],
    ["http://169.254.43518/", /^169\.254\.169\.254 .*cloud metadata/],
    ["http://[::ffff:169.254.169.254]/", /IPv4-mapped link-local.*cloud metadata/],
    ["http://[64:ff9b::a9fe:a9fe]/", /NAT64 link-local/],
    ["http://[fd00:ec2::254]/latest/meta-data/", /unique local/],
    ["http://10.0.0.1/", /private \(10/],
    ["http://012.0.0.1/", /^10\.0\.0\.1 .*private/],
    ["http://10.1/", /^10\.0\.0\.1 .*private/],
    ["http://172.16.0.1/", /private \(172\.16/],
    ["http://0xac100001/", /^172\.16\.0\.1 .*private/],
    ["http://192.168.0.1/", /private \(192\.168/],
    ["http://3232235521/", /^192\.168\.0\.1 .*private/],
    ["http://100.64.0.1/", /CGNAT/],
    ["http://0/", /^0\.0\.0\.0 .*this network/],
    ["http://0.0.0.0:8080/", /this network/],
    ["http://224.0.0.1/", /multicast/],
    ["http://255.255.255.255/", /broadcast/],
    ["http://4294967295/", /^255\.255\.255\.255 .*broadcast/],
    ["http://[fc00::1]/", /unique local/],
    ["http://[fe80::1]/", /link-local \(fe80/],
    ["http://[ff02::1]/", /multicast \(ff00/],
  ])("refuses %s", (url, reason) => {
    const refusal = policy.refuse(new URL(url));
    expect(refusal).toMatch(reason);
    expect(refusal).toContain("JOBQUEUE_ALLOWED_HOSTS");
  });

  it.each([
    "http://localhost/",
    "http://LOCALHOST:8080/",
    "http://localhost./",
    "http://api.localhost/",
    "http://a.b.LocalHost./x",
  ])("refuses the loopback name in %s", (url) => {
    expect(policy.refuse(new URL(url))).toMatch(/^host [a-z.]*localhost is loopback/);
  });

  it.each([
    "http://8.8.8.8/",
    "http://134744072/",
    "https://1.1.1.1/",
    "https://example.com/",
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://localhost.example.com/",
    "http://mylocalhost/",
    "http://internal.corp/",
  ])("leaves %s alone (names are judged at connect time)", (url) => {
    expect(policy.refuse(new URL(url))).toBeNull();
  });
});

describe("refuse: JOBQUEUE_ALLOWED_HOSTS and JOBQUEUE_DENIED_HOSTS", () => {
  it("allows an IP in every spelling of it, and nothing next to it", () => {
    const policy = policyWith({ allowed: ["127.0.0.1"] });
    expect(policy.refuse(new URL("http://127.0.0.1:9000/"))).toBeNull();
    expect(policy.refuse(new URL("http://2130706433/"))).toBeNull();
    expect(policy.refuse(new URL("http://127.1/"))).toBeNull();
    expect(policy.refuse(new URL("http://127.0.0.2/"))).toMatch(/loopback/);
    expect(policy.refuse(new URL("http://[::1]/"))).toMatch(/loopback/);
    expect(policy.refuse(new URL("http://localhost/"))).toMatch(/loopback/);
  });

  it("allows a CIDR", () => {
    const policy = policyWith({ allowed: ["10.0.0.0/8", "fd00::/8"] });
    expect(policy.refuse(new URL("http://10.1.2.3/"))).toBeNull();
    expect(policy.refuse(new URL("http://012.1.2.3/"))).toBeNull();
    expect(policy.refuse(new URL("http://[fd00:ec2::254]/"))).toBeNull();
    expect(policy.refuse(new URL("http://[fc00::1]/"))).toMatch(/unique local/);
    expect(policy.refuse(new URL("http://192.168.0.1/"))).toMatch(/private/);
  });

  it("allows an IPv6 address given in brackets", () => {
    const policy = policyWith({ allowed: ["[::1]"] });
    expect(policy.refuse(new URL("http://[::1]:8080/"))).toBeNull();
    expect(policy.refuse(new URL("http://127.0.0.1/"))).toMatch(/loopback/);
  });

  it("allows local names by name or wildcard", () => {
    const policy = policyWith({ allowed: ["localhost", "*.dev.localhost"] });
    expect(policy.refuse(new URL("http://localhost/"))).toBeNull();
    expect(policy.refuse(new URL("http://api.dev.localhost/"))).toBeNull();
    expect(policy.refuse(new URL("http://dev.localhost/"))).toMatch(/loopback/);
    expect(policy.refuse(new URL("http://other.localhost/"))).toMatch(/loopback/);
  });

  it("refuses a denied name, also with a trailing dot or in capitals", () => {
    const policy = policyWith({ denied: ["evil.example"] });
    for (const url of [
      "http://evil.example/",
      "https://EVIL.example:8443/",
      "http://evil.example./",
    ]) {
      expect(policy.refuse(new URL(url)), url).toMatch(
        /^host evil\.example is denied \(JOBQUEUE_DENIED_HOSTS\)$/,
      );
    }
    expect(policy.refuse(new URL("http://sub.evil.example/"))).toBeNull();
    expect(policy.refuse(new URL("http://notevil.example/"))).toBeNull();
  });

  it("refuses names under a denied wildcard", () => {
    const policy = policyWith({ denied: ["*.evil.example"] });
    expect(policy.refuse(new URL("http://a.evil.example/"))).toMatch(/denied/);
    expect(policy.refuse(new URL("http://a.b.evil.example./"))).toMatch(/denied/);
  });

  it("refuses a denied public IP in every spelling, IPv6 forms that carry it included", () => {
    const policy = policyWith({ denied: ["8.8.8.8", "93.184.0.0/16"] });
    for (const url of [
      "http://8.8.8.8/",
      "http://134744072/",
      "http://0x8.0x8.0x8.0x8/",
      "http://[::ffff:8.8.8.8]/",
      "http://[::ffff:808:808]/",
      "http://[64:ff9b::808:808]/",
      "http://[2002:808:808::]/",
      "http://93.184.216.34/",
    ]) {
      expect(policy.refuse(new URL(url)), url).toMatch(/is denied \(JOBQUEUE_DENIED_HOSTS\)/);
    }
    expect(policy.refuse(new URL("http://8.8.4.4/"))).toBeNull();
  });

  it("lets denied win over allowed, for IPs and for names", () => {
    const policy = policyWith({
      allowed: ["10.0.0.0/8", "*.corp.test", "api.example.com"],
      denied: ["10.0.0.5", "secret.corp.test", "api.example.com"],
    });
    expect(policy.refuse(new URL("http://10.0.0.6/"))).toBeNull();
    expect(policy.refuse(new URL("http://10.0.0.5/"))).toMatch(/^10\.0\.0\.5 is denied/);
    expect(policy.refuse(new URL("http://[::ffff:10.0.0.5]/"))).toMatch(/is denied/);
    expect(policy.refuse(new URL("http://wiki.corp.test/"))).toBeNull();
    expect(policy.refuse(new URL("http://secret.corp.test/"))).toMatch(/denied/);
    expect(policy.refuse(new URL("https://api.example.com/"))).toMatch(/denied/);
  });
});

describe("lookup: the check on the resolved address, at connect time", () => {
  it.each([
    ["127.0.0.1", /loopback/],
    ["10.0.0.1", /private \(10/],
    ["172.16.5.4", /private \(172\.16/],
    ["192.168.1.1", /private \(192\.168/],
    ["169.254.169.254", /cloud metadata/],
    ["100.64.0.1", /CGNAT/],
    ["0.0.0.0", /this network/],
    ["224.0.0.251", /multicast/],
    ["255.255.255.255", /broadcast/],
    ["::1", /IPv6 loopback/],
    ["fd00:ec2::254", /unique local/],
    ["fe80::1", /link-local \(fe80/],
    ["::ffff:127.0.0.1", /IPv4-mapped loopback/],
    ["64:ff9b::a9fe:a9fe", /NAT64 link-local/],
  ])("refuses a name that resolves to %s", async (address, reason) => {
    const dns = fakeResolver({ "target.example": [address] });
    const policy = policyWith({ resolve: dns.resolve });
    for (const options of [{ all: true }, {}, undefined]) {
      const { err } = await lookup(policy, "target.example", options);
      expect(err).toBeInstanceOf(DestinationBlockedError);
      expect(err!.code).toBe("EDESTINATIONBLOCKED");
      expect(err!.message).toMatch(
        new RegExp(`^host target\\.example resolves to ${address.replaceAll(".", "\\.")}, which`),
      );
      expect(err!.message).toMatch(reason);
    }
  });

  it("answers a public name in the form asked for: all, one, or one of a family", async () => {
    const dns = fakeResolver({ "api.example.com": ["93.184.216.34", "2606:2800:220:1::1"] });
    const policy = policyWith({ resolve: dns.resolve });
    expect(await lookup(policy, "api.example.com", { all: true })).toEqual({
      err: null,
      address: [
        { address: "93.184.216.34", family: 4 },
        { address: "2606:2800:220:1::1", family: 6 },
      ],
      family: undefined,
    });
    expect(await lookup(policy, "api.example.com")).toEqual({
      err: null,
      address: "93.184.216.34",
      family: 4,
    });
    expect(await lookup(policy, "api.example.com", { family: 6 })).toEqual({
      err: null,
      address: "2606:2800:220:1::1",
      family: 6,
    });
    expect(dns.asked).toEqual(["api.example.com", "api.example.com", "api.example.com"]);
  });

  it("refuses a name with one private address among public ones, wherever it sits", async () => {
    const dns = fakeResolver({
      "first.example": ["10.0.0.1", "93.184.216.34"],
      "last.example": ["93.184.216.34", "2606:4700:4700::1111", "::ffff:169.254.169.254"],
    });
    const policy = policyWith({ resolve: dns.resolve });
    const first = await lookup(policy, "first.example", { all: true });
    expect(first.err).toBeInstanceOf(DestinationBlockedError);
    expect(first.err!.message).toMatch(/resolves to 10\.0\.0\.1/);
    expect(first.address).toEqual([]);
    const last = await lookup(policy, "last.example");
    expect(last.err).toBeInstanceOf(DestinationBlockedError);
    expect(last.err!.message).toMatch(/resolves to ::ffff:169\.254\.169\.254/);
  });

  it("lets an allowed name reach private addresses, by name or by wildcard", async () => {
    const dns = fakeResolver({
      "api.internal.test": ["10.0.0.7"],
      "a.b.svc.test": ["127.0.0.1", "::1"],
      "svc.test": ["127.0.0.1"],
      "othersvc.test": ["127.0.0.1"],
    });
    const policy = policyWith({
      allowed: ["api.internal.test", "*.svc.test"],
      resolve: dns.resolve,
    });
    expect(await lookup(policy, "api.internal.test", { all: true })).toMatchObject({
      err: null,
      address: [{ address: "10.0.0.7", family: 4 }],
    });
    expect(await lookup(policy, "A.B.SVC.test.", { all: true })).toMatchObject({
      err: null,
      address: [{ address: "127.0.0.1" }, { address: "::1" }],
    });
    // A wildcard covers names below it, not the name itself nor look-alikes.
    expect((await lookup(policy, "svc.test")).err).toBeInstanceOf(DestinationBlockedError);
    expect((await lookup(policy, "othersvc.test")).err).toBeInstanceOf(DestinationBlockedError);
  });

  it("lets addresses inside an allowed CIDR through, but not a name that also has others", async () => {
    const dns = fakeResolver({
      "db.test": ["10.1.2.3"],
      "split.test": ["10.1.2.3", "192.168.0.1"],
    });
    const policy = policyWith({ allowed: ["10.0.0.0/8"], resolve: dns.resolve });
    expect(await lookup(policy, "db.test")).toEqual({ err: null, address: "10.1.2.3", family: 4 });
    const split = await lookup(policy, "split.test", { all: true });
    expect(split.err!.message).toMatch(/192\.168\.0\.1, which is not public: private/);
  });

  it("refuses a denied name without asking the resolver, trailing dot or not", async () => {
    const dns = fakeResolver({ "evil.example": ["93.184.216.34"] });
    const policy = policyWith({ denied: ["evil.example"], resolve: dns.resolve });
    for (const name of ["evil.example", "EVIL.example."]) {
      const { err } = await lookup(policy, name, { all: true });
      expect(err).toBeInstanceOf(DestinationBlockedError);
      expect(err!.message).toBe("host evil.example is denied (JOBQUEUE_DENIED_HOSTS)");
    }
    expect(dns.asked).toEqual([]);
  });

  it("refuses a denied address even behind an allowed name, in any IPv6 form", async () => {
    const dns = fakeResolver({
      "meta.corp.test": ["169.254.169.254"],
      "dns.corp.test": ["::ffff:8.8.8.8"],
      "ok.corp.test": ["169.254.1.1"],
    });
    const policy = policyWith({
      allowed: ["*.corp.test"],
      denied: ["169.254.169.254", "8.8.8.8"],
      resolve: dns.resolve,
    });
    const meta = await lookup(policy, "meta.corp.test", { all: true });
    expect(meta.err!.message).toBe(
      "host meta.corp.test resolves to 169.254.169.254, which is denied (JOBQUEUE_DENIED_HOSTS)",
    );
    const mapped = await lookup(policy, "dns.corp.test");
    expect(mapped.err!.message).toMatch(/::ffff:8\.8\.8\.8, which is denied/);
    expect((await lookup(policy, "ok.corp.test")).err).toBeNull();
  });

  it("passes resolver failures and empty answers on as DNS errors, not refusals", async () => {
    const failing = policyWith({
      resolve: async () => {
        throw Object.assign(new Error("getaddrinfo EAI_AGAIN flaky.test"), { code: "EAI_AGAIN" });
      },
    });
    const flaky = await lookup(failing, "flaky.test", { all: true });
    expect(flaky.err).not.toBeInstanceOf(DestinationBlockedError);
    expect(flaky.err!.code).toBe("EAI_AGAIN");
    const empty = await lookup(policyWith({ resolve: fakeResolver({}).resolve }), "none.test");
    expect(empty.err).not.toBeInstanceOf(DestinationBlockedError);
    expect(empty.err!.code).toBe("ENOTFOUND");
  });
});

describe("lookup under net.connect, against a listening socket", () => {
  let server: net.Server | undefined;
  afterEach(async () => {
    const s = server;
    server = undefined;
    if (s) await new Promise((resolve) => s.close(resolve));
  });

  /** A TCP server on 127.0.0.1 that counts the connections it accepts. */
  async function listen() {
    const accepted: net.Socket[] = [];
    const arrived = new EventEmitter();
    server = net.createServer((socket) => {
      accepted.push(socket);
      socket.destroy();
      arrived.emit("connection");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    return { port, accepted, arrived };
  }

  function connect(lookupFn: LookupFunction, host: string, port: number) {
    const socket = net.connect({ host, port, lookup: lookupFn });
    return new Promise<Error | null>((resolve) => {
      socket.once("connect", () => {
        socket.destroy();
        resolve(null);
      });
      socket.once("error", resolve);
    });
  }

  it("stops a refused name before any connection; an allowed one connects", async () => {
    const { port, accepted, arrived } = await listen();
    const dns = fakeResolver({
      "rebind.example": ["127.0.0.1"],
      "local.svc.test": ["127.0.0.1"],
    });
    const policy = policyWith({ allowed: ["*.svc.test"], resolve: dns.resolve });

    const refused = await connect(policy.lookup, "rebind.example", port);
    expect(refused).toBeInstanceOf(DestinationBlockedError);
    expect(refused!.message).toMatch(/rebind\.example resolves to 127\.0\.0\.1/);

    // The control: the allowed name reaches the same server, and it is the only connection.
    const seen = once(arrived, "connection");
    expect(await connect(policy.lookup, "local.svc.test", port)).toBeNull();
    await seen;
    expect(accepted).toHaveLength(1);
    expect(dns.asked).toEqual(["rebind.example", "local.svc.test"]);
  });
});
