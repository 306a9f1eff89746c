import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  alignTable,
  binarySize,
  ellipsis,
  formatGoFloat,
  formatPorts,
  formatTimestampNano,
  goQuote,
  humanDuration,
  humanSize,
  parseGoDuration,
  parseTimestampArg,
  shortId,
  timeAgo,
} from '../../src/cli/format.js';

describe('sizes', () => {
  it("matches go-units' decimal HumanSize as docker prints it", () => {
    assert.equal(humanSize(0), '0B');
    assert.equal(humanSize(24), '24B');
    assert.equal(humanSize(1982401), '1.98MB');
    assert.equal(humanSize(4_096), '4.1kB');
    assert.equal(humanSize(4_100_000), '4.1MB');
    assert.equal(humanSize(1_000_000_000), '1GB');
    // Go's %.3g switches to exponent form here; docker really prints this.
    assert.equal(humanSize(999_999), '1e+03kB');
    assert.equal(humanSize(1982401, 4), '1.982MB');
  });

  it('formats binary sizes for docker info', () => {
    assert.equal(binarySize(8 * 1024 ** 3), '8GiB');
    assert.equal(binarySize(33_554_432_000), '31.25GiB');
  });

  it("implements Go's %g", () => {
    assert.equal(formatGoFloat(123.456, 3), '123');
    assert.equal(formatGoFloat(0.00001234, 3), '1.23e-05');
    assert.equal(formatGoFloat(1.5, 3), '1.5');
  });
});

describe('durations', () => {
  it("matches go-units' HumanDuration", () => {
    const cases: [number, string][] = [
      [0, 'Less than a second'],
      [1_000, '1 second'],
      [5_000, '5 seconds'],
      [60_000, 'About a minute'],
      [3 * 60_000, '3 minutes'],
      [3_600_000, 'About an hour'],
      [5 * 3_600_000, '5 hours'],
      [3 * 86_400_000, '3 days'],
      [21 * 86_400_000, '3 weeks'],
      [90 * 86_400_000, '3 months'],
      [800 * 86_400_000, '2 years'],
    ];
    for (const [ms, text] of cases) assert.equal(humanDuration(ms), text, `${ms} ms`);
  });

  it('says "N ago" relative to now', () => {
    assert.equal(timeAgo(1000, 1_006_000), '6 seconds ago');
  });

  it('parses Go durations and --since/--until values', () => {
    assert.equal(parseGoDuration('1h30m'), 5_400_000);
    assert.equal(parseGoDuration('10s'), 10_000);
    assert.equal(parseGoDuration('1.5m'), 90_000);
    assert.equal(parseGoDuration('abc'), undefined);
    const now = 1_795_925_725_000;
    assert.equal(parseTimestampArg('1m', now), '1795925665');
    assert.equal(parseTimestampArg('0s', now), '1795925725');
    assert.equal(parseTimestampArg('1795925665.5', now), '1795925665.5');
    assert.equal(parseTimestampArg('2024-01-01T00:00:00Z', now), '1704067200');
    assert.equal(parseTimestampArg('2024-01-01T00:00:00.25Z', now), '1704067200.250000000');
    assert.throws(() => parseTimestampArg('yesterday', now));
  });
});

describe('text helpers', () => {
  it('truncates with an ellipsis and shortens ids', () => {
    assert.equal(ellipsis('sleep 1000', 20), 'sleep 1000');
    assert.equal(ellipsis('sh -c while true; do echo hi; done', 20), 'sh -c while true; d…');
    assert.equal(shortId('sha256:6caa8d855dc5a1b2c3d4'), '6caa8d855dc5');
    assert.equal(shortId('280213d7e184ffff'), '280213d7e184');
    assert.equal(goQuote('sleep "1"'), '"sleep \\"1\\""');
  });

  it('aligns columns like tabwriter(minwidth 10, padding 3)', () => {
    const out = alignTable(['CONTAINER ID\tIMAGE\tNAMES', '280213d7e184\tbb:latest\tweb1']);
    assert.equal(out, 'CONTAINER ID   IMAGE       NAMES\n280213d7e184   bb:latest   web1\n');
    // An empty trailing cell still pads the previous one (docker history's COMMENT column).
    assert.equal(alignTable(['A\tB', 'x\t']), 'A         B\nx         \n');
    assert.equal(
      alignTable(['UID\tPID', 'root\t1'], { minWidth: 20 }),
      `UID${' '.repeat(17)}PID\nroot${' '.repeat(16)}1\n`,
    );
  });

  it('renders the PORTS column with ranges and IPv6 brackets', () => {
    assert.equal(
      formatPorts([
        { IP: '0.0.0.0', PrivatePort: 80, PublicPort: 8080, Type: 'tcp' },
        { IP: '::', PrivatePort: 80, PublicPort: 8080, Type: 'tcp' },
        { PrivatePort: 5000, Type: 'tcp' },
      ]),
      '0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 5000/tcp',
    );
    assert.equal(
      formatPorts([
        { IP: '0.0.0.0', PrivatePort: 80, PublicPort: 8080, Type: 'tcp' },
        { IP: '0.0.0.0', PrivatePort: 81, PublicPort: 8081, Type: 'tcp' },
      ]),
      '0.0.0.0:8080-8081->80-81/tcp',
    );
    assert.equal(formatPorts(null), '');
  });

  it('prints event times with nine fractional digits', () => {
    const saved = process.env.TZ;
    process.env.TZ = 'UTC';
    try {
      assert.equal(formatTimestampNano(1795925955517229239n), '2026-11-29T04:19:15.517229239Z');
      assert.equal(formatTimestampNano(1795925955000000000n), '2026-11-29T04:19:15.000000000Z');
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});
