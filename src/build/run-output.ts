import { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/**
 * The "client" a RUN step attaches to its container: receives the multiplexed output frames the
 * attach hub writes (8-byte header: stream, 0, 0, 0, big-endian length) and hands the text on,
 * decoded per stream so a UTF-8 character split across frames stays whole. `ended` resolves when
 * the container's output is finished.
 */
export class RunOutputSink extends Duplex {
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;
  private pending: Buffer = Buffer.alloc(0);
  private readonly decoders = { 1: new StringDecoder('utf8'), 2: new StringDecoder('utf8') };

  constructor(private readonly onText: ((text: string) => void) | null) {
    super();
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 8) {
      const length = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + length) break;
      const stream = this.pending[0] === 2 ? 2 : 1;
      const text = this.decoders[stream].write(this.pending.subarray(8, 8 + length));
      this.pending = this.pending.subarray(8 + length);
      if (text !== '' && this.onText) this.onText(text);
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    for (const decoder of Object.values(this.decoders)) {
      const rest = decoder.end();
      if (rest !== '' && this.onText) this.onText(rest);
    }
    this.resolveEnded();
    callback();
  }

  override _read(): void {
    // Nothing is ever sent to the container.
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.resolveEnded();
    callback(error);
  }
}
