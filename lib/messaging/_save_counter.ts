/**
 * The session manager's defence against a rolled-back `dim.db`: a save
 * counter in the database and a high-water mark of it outside.
 *
 * A session state put back to an older copy would encrypt the next message
 * with a message key and nonce already used. Each saved state therefore
 * gets the next value of a save counter, kept in the database
 * (`session_saves`, written in the transaction that saves the state); the
 * session manager seals the state with the peer, the session ID and that
 * counter as associated data, so it cannot be moved to another row or
 * counter. A high-water mark of the counter is kept outside the database
 * ({@linkcode SessionMarkStorage}, a file beside `dim.db`): written every
 * `SESSION_MARK_INTERVAL` (1,000) saves, after the save has committed, and
 * exactly at a clean stop.
 *
 * On start, a database whose counter is below the mark (or that has counted
 * saves while the mark is missing or unreadable) was put back: every
 * session is dropped, so the next message to each peer starts a new session
 * from fresh prekeys. A database from before the counter has none (0): it
 * is taken to be at the mark if the mark is 0 or missing, and rolled back
 * otherwise (it then predates a run that counted saves).
 *
 * Not detected: a copy put back within one interval of a crash (the mark
 * lags the counter by up to 1,000 saves until a clean stop), a single row
 * put back by someone who edits the file and leaves the counter as it is,
 * and a whole data directory, mark and keystore included, copied to a
 * second machine and used on both.
 *
 * @module
 */
import type { SessionMarkStorage, SettingsStorage } from "./storage.ts";

const SAVES_META = "session_saves";

/**
 * How long after a save its commit is made at the latest: a transaction
 * deferred to a batch's commit is committed within 50 ms
 * (`lib/store/connection.ts`), so the mark waits longer than that.
 */
const DEFERRED_SAVE_MS = 60;

/** What the start found when the database was put back to an older copy. */
export interface SessionRollback {
  /** The save counter the database held (0 if it had none). */
  readonly saves: number;
  /** The mark kept outside it; `undefined` if it was missing or unreadable. */
  readonly mark: number | undefined;
  /** How many sessions were dropped. */
  readonly dropped: number;
}

/** The save counter of one database and its mark outside it. */
export class SaveCounter {
  readonly #settings: SettingsStorage;
  readonly #mark: SessionMarkStorage | undefined;
  readonly #interval: number;
  /** The last counter handed out. */
  #last: number;
  /** The mark last written (or found) outside the database. */
  #marked = 0;
  #due = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writes: Promise<void> = Promise.resolve();

  constructor(
    settings: SettingsStorage,
    mark: SessionMarkStorage | undefined,
    interval: number,
  ) {
    this.#settings = settings;
    this.#mark = mark;
    this.#interval = interval;
    this.#last = this.#stored();
  }

  /** The counter committed to the database; 0 if it has none. */
  #stored(): number {
    const n = Number(this.#settings.get(SAVES_META) ?? 0);
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  /**
   * Compares the database's counter with the mark; if the database was put
   * back, calls `dropAll` first. Then brings both up to date.
   *
   * @param dropAll Drops every session; returns how many.
   * @returns What was found if the database was put back, else `undefined`.
   */
  async check(dropAll: () => number): Promise<SessionRollback | undefined> {
    const mark = this.#mark;
    if (mark === undefined) return undefined;
    const saves = this.#stored();
    let marked: number | undefined;
    try {
      marked = await mark.read();
    } catch {
      // Unreadable counts as missing, and protects as a missing one does.
      marked = undefined;
    }
    // A database that counted saves but has no mark beside it was copied
    // here, or its mark was removed: its states cannot be trusted either.
    const rolledBack = marked === undefined ? saves > 0 : saves < marked;
    const base = Math.max(saves, marked ?? 0);
    // Dropped before the counter moves up: a crash in between finds the
    // counter still low and drops again, which is harmless.
    const rollback = rolledBack ? { saves, mark: marked, dropped: dropAll() } : undefined;
    if (base !== saves) this.#settings.set(SAVES_META, String(base));
    this.#last = Math.max(this.#last, base);
    this.#marked = marked ?? 0;
    if (marked !== base) {
      try {
        await mark.write(base);
        this.#marked = base;
      } catch {
        // The old mark stays, at or below the counter: only the window of
        // an undetected rollback is longer.
      }
    }
    return rollback;
  }

  /**
   * Hands out the next counter, for a state about to be sealed.
   *
   * @returns The counter.
   */
  next(): number {
    return ++this.#last;
  }

  /**
   * Counts a saved state: call inside the transaction that saves it.
   *
   * @param counter The state's counter.
   */
  saved(counter: number): void {
    if (counter > this.#stored()) this.#settings.set(SAVES_META, String(counter));
    if (this.#mark === undefined || this.#due || counter < this.#marked + this.#interval) return;
    this.#due = true;
    // Once the transaction has committed (or rolled back): a deferred one
    // commits within DEFERRED_SAVE_MS, so the mark never passes a committed counter.
    this.#timer = setTimeout(() => {
      this.#due = false;
      this.#writeMark();
    }, DEFERRED_SAVE_MS);
    Deno.unrefTimer(this.#timer);
  }

  /**
   * Writes the exact mark (at a clean stop). A failed write keeps the last
   * mark, which stays at or below the database's counter.
   *
   * @returns When it is written.
   */
  close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#due = false;
    this.#writeMark();
    return this.#writes;
  }

  /** Queues a write of the committed counter as the mark, if it moved on. */
  #writeMark(): void {
    const mark = this.#mark;
    if (mark === undefined) return;
    this.#writes = this.#writes.then(async () => {
      const saves = this.#stored();
      if (saves <= this.#marked) return;
      await mark.write(saves);
      this.#marked = saves;
    }).catch(() => {
      // Tried again after the next interval's save, or at close.
    });
  }
}
