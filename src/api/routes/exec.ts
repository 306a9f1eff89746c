import { z } from 'zod';
import { errorMessage, InvalidArgument } from '../../common/errors.js';
import { execCreateSchema } from '../../containers/exec.js';
import type { ContainerService } from '../../containers/service.js';
import { hijack, readRequestBody } from '../hijack.js';
import { queryInt, type RouteTable, readJson, sendEmpty, sendJson } from '../http.js';

const startSchema = z.object({ Detach: z.boolean().nullish(), Tty: z.boolean().nullish() }).loose();

export function registerExecRoutes(routes: RouteTable, deps: { containers: ContainerService }): void {
  const execs = deps.containers.execs;

  routes.add('POST', '/containers/:id/exec', async (r) => {
    const body = await readJson(r.req, execCreateSchema);
    sendJson(r.res, 201, execs.create(r.params.id, body));
  });

  routes.add('POST', '/exec/:id/start', async (r) => {
    const session = execs.get(r.params.id);
    const { body, rest } = await readRequestBody(r);
    let parsed: z.infer<typeof startSchema> = {};
    if (body.length > 0) {
      try {
        parsed = startSchema.parse(JSON.parse(body.toString('utf8')));
      } catch (err) {
        throw new InvalidArgument(`invalid JSON body: ${errorMessage(err)}`);
      }
    }
    if (session.started) throw new InvalidArgument(`Error: Exec command ${session.id} is already running`);
    const tty = parsed.Tty ?? session.config.Tty ?? false;
    if (parsed.Detach) {
      await execs.start(session.id, {
        tty,
        client: null,
        initialInput: Buffer.alloc(0),
        clientSendsInput: false,
      });
      sendEmpty(r.res, 200);
      return;
    }
    const h = hijack(
      r,
      rest,
      tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream',
    );
    try {
      await execs.start(session.id, {
        tty,
        client: h.socket,
        initialInput: h.initialInput,
        clientSendsInput: h.isBidirectional,
      });
    } finally {
      if (!h.socket.destroyed) h.socket.end();
    }
  });

  routes.add('POST', '/exec/:id/resize', (r) => {
    execs.resize(r.params.id, queryInt(r.query, 'h', 0), queryInt(r.query, 'w', 0));
    sendEmpty(r.res, 200);
  });

  routes.add('GET', '/exec/:id/json', (r) => {
    sendJson(r.res, 200, execs.inspect(r.params.id));
  });
}
