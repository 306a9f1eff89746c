import type { CommandHandler, CommandSpec } from '../commands.js';
import { UsageError } from '../errors.js';

/**
 * `strata acl`: a container's owner and access control list (see README, "Access control").
 *
 *   strata acl show CONTAINER               owner and entries
 *   strata acl grant CONTAINER PRINCIPAL RIGHTS      e.g. grant web user:bob view,exec
 *   strata acl revoke CONTAINER PRINCIPAL [RIGHTS]   without RIGHTS: every right
 *   strata acl set CONTAINER 'user:bob=view;group:ops=all'   replaces the list ('' empties it)
 *   strata acl whoami                       the principal the daemon sees for this client
 *
 * `STRATA_TOKEN` sends a bearer token instead of the unix-socket identity.
 */
interface AclView {
  Owner: string;
  Entries: { Principal: string; Rights: string[] }[];
  Text: string;
}

const USAGE = 'acl show|grant|revoke|set|whoami [CONTAINER] [PRINCIPAL] [RIGHTS]';

function rightsOf(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  return text
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
}

export const aclCommand: CommandHandler = async (ctx) => {
  const [verb, container, principal, rights] = ctx.args;
  const needs = (n: number) => {
    if (ctx.args.length < n)
      throw new UsageError(`strata: 'strata acl ${verb}' needs more arguments. Usage: strata ${USAGE}`);
  };
  const client = await ctx.client();
  const token = process.env.STRATA_TOKEN;
  const headers = token ? { Authorization: `Bearer ${token}` } : undefined;
  const path = () => `/containers/${encodeURIComponent(container)}/acl`;
  let view: AclView;
  switch (verb) {
    case 'whoami': {
      const me = await client.json<{ Principal: string; Groups: string[]; Admin: boolean }>(
        'GET',
        '/acl/whoami',
        {
          headers,
        },
      );
      process.stdout.write(`${me.Principal}${me.Admin ? ' (admin)' : ''}\n`);
      if (me.Groups.length > 0) process.stdout.write(`groups: ${me.Groups.join(' ')}\n`);
      return 0;
    }
    case 'show':
      needs(2);
      view = await client.json<AclView>('GET', path(), { headers });
      break;
    case 'grant':
      needs(4);
      view = await client.json<AclView>('POST', path(), {
        headers,
        json: { Grant: [{ Principal: principal, Rights: rightsOf(rights) }] },
      });
      break;
    case 'revoke':
      needs(3);
      view = await client.json<AclView>('POST', path(), {
        headers,
        json: { Revoke: [{ Principal: principal, ...(rights ? { Rights: rightsOf(rights) } : {}) }] },
      });
      break;
    case 'set':
      needs(3);
      view = await client.json<AclView>('PUT', path(), { headers, json: { Text: principal } });
      break;
    default:
      throw new UsageError(`strata: unknown acl command "${verb ?? ''}". Usage: strata ${USAGE}`);
  }
  if (ctx.flags.string('format') === 'json') {
    process.stdout.write(`${JSON.stringify(view)}\n`);
    return 0;
  }
  process.stdout.write(`OWNER     ${view.Owner}\n`);
  for (const e of view.Entries) process.stdout.write(`${e.Principal.padEnd(24)} ${e.Rights.join(',')}\n`);
  return 0;
};

export const ACL_COMMAND: CommandSpec = {
  name: 'acl',
  usage: USAGE,
  summary: "Show or change a container's access control list",
  flags: [{ name: 'format', kind: 'string', help: 'Output format: json' }],
  minArgs: 1,
  maxArgs: 4,
  load: async () => aclCommand,
};
