import { EventEmitter } from 'node:events';

/**
 * The engine's event stream (`GET /events`). Services publish; the API replays the recent history for
 * `since` and streams new ones. Kept in memory like dockerd (which also forgets events on restart).
 */
export interface EngineEvent {
  Type: 'container' | 'image' | 'network' | 'volume' | 'daemon' | 'builder';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: number;
  /** Legacy fields, container and image events only (compose reads them). */
  status?: string;
  id?: string;
  from?: string;
}

const HISTORY_LIMIT = 1024;

export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly history: EngineEvent[] = [];

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(
    type: EngineEvent['Type'],
    action: string,
    id: string,
    attributes: Record<string, string> = {},
  ): void {
    const nowNs = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
    const event: EngineEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attributes },
      scope: 'local',
      time: Number(nowNs / 1_000_000_000n),
      timeNano: Number(nowNs),
    };
    if (type === 'container' || type === 'image') {
      event.status = action;
      event.id = id;
      if (type === 'container' && attributes.image !== undefined) event.from = attributes.image;
    }
    this.history.push(event);
    if (this.history.length > HISTORY_LIMIT) this.history.splice(0, this.history.length - HISTORY_LIMIT);
    this.emitter.emit('event', event);
  }

  /** Events recorded at or after `sinceNs` (and at or before `untilNs` when given). */
  recent(sinceNs: bigint, untilNs?: bigint): EngineEvent[] {
    return this.history.filter((e) => {
      const t = BigInt(e.timeNano);
      return t >= sinceNs && (untilNs === undefined || t <= untilNs);
    });
  }

  subscribe(listener: (event: EngineEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
