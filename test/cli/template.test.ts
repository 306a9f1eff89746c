import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { containerRow } from '../../src/cli/commands/containers.js';
import { historyRows, imageRows } from '../../src/cli/commands/images.js';
import { renderRows } from '../../src/cli/listing.js';
import { printValue, renderTemplate, TemplateError } from '../../src/cli/template.js';

const inspect = {
  Id: 'abc',
  Name: '/web',
  State: { Status: 'running', Pid: 42, Running: true },
  Config: { Env: ['A=1', 'B=2'], Labels: { b: '2', a: '1' }, Cmd: ['sleep', '100'] },
  Mounts: [{ Source: '/tmp', Destination: '/t' }],
  Empty: [],
};

describe('template', () => {
  it('resolves fields, nested fields and literals', () => {
    assert.equal(renderTemplate('{{.State.Status}} {{.Name}} {{.State.Pid}}', inspect), 'running /web 42');
    assert.equal(renderTemplate('{{.Missing}}', inspect), '<no value>');
    assert.equal(renderTemplate('x{{"lit"}}y{{42}}', {}), 'xlity42');
  });

  it("prints values like Go's %v", () => {
    assert.equal(renderTemplate('{{.Config.Cmd}}', inspect), '[sleep 100]');
    assert.equal(renderTemplate('{{.Config.Labels}}', inspect), 'map[a:1 b:2]');
    assert.equal(printValue(null), '<nil>');
  });

  it('has json, join, upper, lower, title, split, index, len, truncate', () => {
    assert.equal(renderTemplate('{{json .Config.Cmd}}', inspect), '["sleep","100"]');
    assert.equal(renderTemplate('{{json .}}', { a: '<b>' }), '{"a":"\\u003cb\\u003e"}');
    assert.equal(renderTemplate('{{join .Config.Env ","}}', inspect), 'A=1,B=2');
    assert.equal(
      renderTemplate('{{upper .Name}} {{lower "AB"}} {{title "hello world"}}', inspect),
      '/WEB ab Hello World',
    );
    assert.equal(renderTemplate('{{index .Config.Labels "a"}} {{len .Config.Env}}', inspect), '1 2');
    assert.equal(renderTemplate('{{index (split "a:b" ":") 1}}', {}), 'b');
    assert.equal(renderTemplate('{{truncate .Id 2}}', inspect), 'ab');
    assert.equal(renderTemplate('{{printf "%s-%d" .Name 7}}', inspect), '/web-7');
  });

  it('supports pipelines, variables, range, if/else if/else and with', () => {
    assert.equal(renderTemplate('{{.Name | upper}}', inspect), '/WEB');
    assert.equal(renderTemplate('{{range .Config.Env}}[{{.}}]{{end}}', inspect), '[A=1][B=2]');
    assert.equal(
      renderTemplate('{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}', inspect),
      'a=1;b=2;',
    );
    assert.equal(renderTemplate('{{range .Mounts}}{{.Source}}:{{.Destination}}{{end}}', inspect), '/tmp:/t');
    assert.equal(renderTemplate('{{range .Empty}}x{{else}}none{{end}}', inspect), 'none');
    assert.equal(renderTemplate('{{if .State.Running}}up{{else}}down{{end}}', inspect), 'up');
    assert.equal(
      renderTemplate(
        '{{if eq .State.Status "exited"}}E{{else if eq .State.Status "running"}}R{{else}}?{{end}}',
        inspect,
      ),
      'R',
    );
    assert.equal(renderTemplate('{{with .State}}{{.Status}}{{end}}', inspect), 'running');
    assert.equal(renderTemplate('{{$n := .Name}}{{$n}}', inspect), '/web');
    assert.equal(renderTemplate('{{- " a " -}} b', {}), ' a b');
  });

  it('reports parse errors', () => {
    assert.throws(() => renderTemplate('{{.Name', {}), TemplateError);
    assert.throws(() => renderTemplate('{{if .A}}x', {}), TemplateError);
    assert.throws(() => renderTemplate('{{nosuchfunc .A}}', {}), /function "nosuchfunc" not defined/);
  });
});

describe('listing rows', () => {
  const container = {
    Id: '280213d7e184aaaabbbbccccddddeeeeffff00001111222233334444555566667777',
    Names: ['/web1'],
    Image: 'bb:latest',
    Command: 'sleep 1000',
    Created: 1000,
    Ports: [{ IP: '0.0.0.0', PrivatePort: 80, PublicPort: 8080, Type: 'tcp' }],
    Labels: { tier: 'web' },
    State: 'running',
    Status: 'Up 5 seconds',
    NetworkSettings: { Networks: { bridge: {} } },
  };

  it('renders the default ps table aligned like docker', () => {
    const rows = [containerRow(container, true, 1_006_000)];
    const out = renderRows(rows, {
      defaultTable:
        'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}',
      headers: {
        ID: 'CONTAINER ID',
        Image: 'IMAGE',
        Command: 'COMMAND',
        RunningFor: 'CREATED',
        Status: 'STATUS',
        Ports: 'PORTS',
        Names: 'NAMES',
      },
    });
    assert.equal(
      out,
      'CONTAINER ID   IMAGE       COMMAND        CREATED         STATUS         PORTS                  NAMES\n' +
        '280213d7e184   bb:latest   "sleep 1000"   6 seconds ago   Up 5 seconds   0.0.0.0:8080->80/tcp   web1\n',
    );
  });

  it('applies custom, quiet and json formats', () => {
    const rows = [containerRow(container, true, 1_006_000)];
    const base = { defaultTable: 'table {{.ID}}', headers: { ID: 'CONTAINER ID', Names: 'NAMES' } };
    assert.equal(renderRows(rows, { ...base, format: '{{.Names}}\\t{{.Label "tier"}}' }), 'web1\tweb\n');
    assert.equal(
      renderRows(rows, { ...base, format: 'table {{.ID}}\\t{{.Names}}' }),
      'CONTAINER ID   NAMES\n280213d7e184   web1\n',
    );
    assert.equal(renderRows(rows, { ...base, quiet: true }), '280213d7e184\n');
    const json = JSON.parse(renderRows(rows, { ...base, format: '{{json .}}' })) as Record<string, string>;
    assert.equal(json.Names, 'web1');
    assert.equal(json.Command, '"sleep 1000"');
    assert.equal(json.Networks, 'bridge');
    assert.deepEqual(Object.keys(json), [...Object.keys(json)].sort());
    const untruncated = containerRow(container, false);
    assert.equal(untruncated.ID, container.Id);
  });

  it('expands image tags into rows and marks untagged images <none>', () => {
    const rows = imageRows(
      [
        {
          Id: 'sha256:5bde6d7dc4cad7a3',
          RepoTags: ['built:v2', '127.0.0.1:5055/bb:v1'],
          Created: 0,
          Size: 1982423,
        },
        { Id: 'sha256:aaaabbbbccccdddd', RepoTags: null, RepoDigests: null, Created: 0, Size: 5 },
      ],
      true,
    );
    assert.deepEqual(
      rows.map((r) => [r.Repository, r.Tag, r.ID, r.Size]),
      [
        ['built', 'v2', '5bde6d7dc4ca', '1.98MB'],
        ['127.0.0.1:5055/bb', 'v1', '5bde6d7dc4ca', '1.98MB'],
        ['<none>', '<none>', 'aaaabbbbcccc', '5B'],
      ],
    );
  });

  it('truncates history CREATED BY at 45 characters', () => {
    const [row] = historyRows(
      [
        {
          Id: '<missing>',
          Created: 0,
          CreatedBy: '|1 GREETING=howdy /bin/sh -c echo "$GREETING" > /greet.txt',
          Size: 6,
        },
      ],
      true,
      true,
    );
    assert.equal(row.CreatedBy, '|1 GREETING=howdy /bin/sh -c echo "$GREETING…');
    assert.equal(row.ID, '<missing>');
    assert.equal(row.Size, '6B');
  });
});
