import { z } from 'zod';
import { InvalidArgument } from '../../common/errors.js';
import type { KeyListing } from '../../hive/hive.js';
import { checkValueName, parseKeyPath } from '../../hive/names.js';
import { parseRegFile } from '../../hive/regfile.js';
import { HiveService, type HiveServiceDeps } from '../../hive/service.js';
import { dataFromJson, parseValueType, valueToJson } from '../../hive/values.js';
import {
  type ApiRequest,
  queryBool,
  type RouteTable,
  readBody,
  readJson,
  sendEmpty,
  sendJson,
} from '../http.js';

/**
 * Strata's registry-hive extension of the Engine API (README, "Per-container registry (hive)"):
 *
 *   GET    /containers/{id}/registry?key=K[&recursive=1][&value=V]   query (value= empty: default)
 *   GET    /containers/{id}/registry/export?key=K                    .reg file, UTF-16 LE with BOM
 *   PUT    /containers/{id}/registry/key          {"Key"}                      create a key
 *   PUT    /containers/{id}/registry/value        {"Key","Name","Type","Data","Overwrite"}
 *   DELETE /containers/{id}/registry?key=K[&value=V|&allValues=1]  delete a key, a value, all values
 *   POST   /containers/{id}/registry/import       body: a .reg file (UTF-16 LE or UTF-8/ANSI)
 *   GET    /images/{name}/registry?key=K[&recursive=1][&value=V]     read-only image view
 *   GET    /images/{name}/registry/export?key=K
 */

const MAX_REG_FILE_BYTES = 16 * 1024 * 1024;

const keyBody = z.object({ Key: z.string() });
const valueBody = z.object({
  Key: z.string(),
  Name: z.string().default(''),
  Type: z.string().default('REG_SZ'),
  Data: z.union([z.string(), z.number(), z.array(z.string())]).optional(),
  Overwrite: z.boolean().default(false),
});

function keyParam(r: ApiRequest) {
  const key = r.query.get('key');
  if (key === null || key === '')
    throw new InvalidArgument('the key parameter is required, e.g. key=HKLM\\Software');
  return parseKeyPath(key);
}

/** `value` present (even empty, for the default value) selects one value. */
function valueParam(r: ApiRequest): string | undefined {
  const value = r.query.get('value');
  if (value !== null) checkValueName(value);
  return value ?? undefined;
}

function listingJson(listing: KeyListing) {
  return { Key: listing.path, Values: listing.values.map(valueToJson), Subkeys: listing.subkeys };
}

function sendRegFile(r: ApiRequest, bytes: Buffer): void {
  r.res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bytes.length });
  r.res.end(bytes);
}

export function registerHiveRoutes(routes: RouteTable, deps: HiveServiceDeps): void {
  const hives = new HiveService(deps);

  routes.add('GET', '/containers/:id/registry', async (r) => {
    const key = keyParam(r);
    const options = { value: valueParam(r), recursive: queryBool(r.query, 'recursive') };
    const keys = await hives.withContainerHive(r.params.id, (hive) => hive.query(key, options));
    sendJson(r.res, 200, { Keys: keys.map(listingJson) });
  });

  routes.add('GET', '/containers/:id/registry/export', async (r) => {
    const key = keyParam(r);
    sendRegFile(r, await hives.withContainerHive(r.params.id, (hive) => hive.exportKey(key)));
  });

  routes.add('PUT', '/containers/:id/registry/key', async (r) => {
    const key = parseKeyPath((await readJson(r.req, keyBody)).Key);
    const created = await hives.withContainerHive(r.params.id, (hive) => hive.createKey(key));
    sendJson(r.res, created ? 201 : 200, { Created: created });
  });

  routes.add('PUT', '/containers/:id/registry/value', async (r) => {
    const body = await readJson(r.req, valueBody);
    const key = parseKeyPath(body.Key);
    checkValueName(body.Name);
    const type = parseValueType(body.Type);
    const data =
      body.Data === undefined
        ? dataFromJson(
            type,
            type === 'REG_MULTI_SZ' ? [] : type === 'REG_DWORD' || type === 'REG_QWORD' ? 0 : '',
          )
        : dataFromJson(type, body.Data);
    const value = { ...data, name: body.Name };
    const created = await hives.withContainerHive(r.params.id, (hive) =>
      hive.setValue(key, value, { overwrite: body.Overwrite }),
    );
    sendJson(r.res, created ? 201 : 200, { Created: created });
  });

  routes.add('DELETE', '/containers/:id/registry', async (r) => {
    const key = keyParam(r);
    const value = valueParam(r);
    const allValues = queryBool(r.query, 'allValues');
    if (value !== undefined && allValues) throw new InvalidArgument('value and allValues cannot be combined');
    await hives.withContainerHive(r.params.id, (hive) => {
      if (value !== undefined) hive.deleteValue(key, value);
      else if (allValues) hive.deleteAllValues(key);
      else hive.deleteKey(key);
    });
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/registry/import', async (r) => {
    const ops = parseRegFile(await readBody(r.req, MAX_REG_FILE_BYTES));
    const summary = await hives.withContainerHive(r.params.id, (hive) => hive.apply(ops));
    sendJson(r.res, 200, {
      KeysCreated: summary.keysCreated,
      KeysDeleted: summary.keysDeleted,
      ValuesSet: summary.valuesSet,
      ValuesDeleted: summary.valuesDeleted,
    });
  });

  routes.add('GET', '/images/:name+/registry', (r) => {
    const key = keyParam(r);
    const options = { value: valueParam(r), recursive: queryBool(r.query, 'recursive') };
    const keys = hives.withImageHive(r.params.name, (hive) => hive.query(key, options));
    sendJson(r.res, 200, { Keys: keys.map(listingJson) });
  });

  routes.add('GET', '/images/:name+/registry/export', (r) => {
    const key = keyParam(r);
    sendRegFile(
      r,
      hives.withImageHive(r.params.name, (hive) => hive.exportKey(key)),
    );
  });
}
