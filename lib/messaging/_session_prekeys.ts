/**
 * The session manager's prekeys: kept sealed among the secrets, published
 * as a signed bundle, and used by the responder's side of X3DH, which
 * deletes a one-time prekey only once the first message sealed with it has
 * decrypted (within the strangers' budget, `_prekey_policy.ts`).
 *
 * @module
 */
import type { Identity } from "../crypto/identity.ts";
import { initHeaderReceiver } from "../crypto/header_ratchet.ts";
import { initReceiver, type RatchetState } from "../crypto/ratchet.ts";
import type { SecretBox } from "../crypto/secret_box.ts";
import { respondX3dh, type X3dhHeader } from "../crypto/x3dh.ts";
import { DecryptionError } from "../errors.ts";
import { signPrekeyBundle } from "../record/prekey.ts";
import {
  consumeOneTimePrekey,
  createPrekeySecrets,
  decodePrekeySecrets,
  encodePrekeySecrets,
  type PrekeySecrets,
  refillOneTimePrekeys,
  rotateSignedPrekey,
  SIGNED_PREKEY_ROTATION_MS,
} from "../record/prekey_secrets.ts";
import type { SignedRecord } from "../record/record.ts";
import type { PrekeyBudget } from "./_prekey_policy.ts";
import type { SettingsStorage } from "./storage.ts";
import { PREKEY_REFILL_BELOW } from "./constants.ts";

const PREKEYS_SECRET = "prekeys";
const PREKEYS_SEQ_META = "prekeys_seq";

/** A responder's new session: its first state, and the prekey change to save with it. */
export interface Response {
  /** The responder's state, before the first message is decrypted. */
  readonly state: RatchetState;
  /** Saves the use of a one-time prekey, if one is to be deleted; call with the session's save. */
  readonly save: () => void;
}

/** The prekeys of one identity. */
export class SessionPrekeys {
  readonly #identity: Identity;
  readonly #settings: SettingsStorage;
  readonly #box: SecretBox;
  readonly #strangers: PrekeyBudget;
  readonly #onChanged: () => void;

  /**
   * @param deps The identity, where the secrets are kept, the box that
   *   seals them, the strangers' budget, and what to call once a one-time
   *   prekey was used.
   */
  constructor(deps: {
    readonly identity: Identity;
    readonly settings: SettingsStorage;
    readonly box: SecretBox;
    readonly strangers: PrekeyBudget;
    readonly onChanged: () => void;
  }) {
    this.#identity = deps.identity;
    this.#settings = deps.settings;
    this.#box = deps.box;
    this.#strangers = deps.strangers;
    this.#onChanged = deps.onChanged;
  }

  async #load(): Promise<PrekeySecrets | undefined> {
    const sealed = this.#settings.getSecret(PREKEYS_SECRET);
    if (sealed === undefined) return undefined;
    return decodePrekeySecrets(await this.#box.open(PREKEYS_SECRET, sealed));
  }

  async #seal(secrets: PrekeySecrets): Promise<Uint8Array> {
    return await this.#box.seal(PREKEYS_SECRET, encodePrekeySecrets(secrets));
  }

  /**
   * Creates the prekeys if there are none, rotates the signed prekey when it
   * is due, refills one-time prekeys, and signs the bundle to publish. Call
   * under the session lock.
   */
  async bundle(now: number): Promise<SignedRecord> {
    let secrets = await this.#load() ?? await createPrekeySecrets(this.#identity, { now });
    const current = secrets.signedPrekeys[0];
    if (current === undefined || now - current.createdAt > SIGNED_PREKEY_ROTATION_MS) {
      secrets = await rotateSignedPrekey(this.#identity, secrets, { now });
    }
    if (secrets.oneTimePrekeys.length < PREKEY_REFILL_BELOW) {
      secrets = await refillOneTimePrekeys(secrets);
    }
    this.#settings.setSecret(PREKEYS_SECRET, await this.#seal(secrets));
    // Storage nodes keep the highest sequence number: after the clock went
    // back, a bundle numbered by the clock alone would be refused, and a
    // used one-time prekey would stay on offer.
    const seq = Math.max(now, Number(this.#settings.get(PREKEYS_SEQ_META) ?? 0) + 1);
    this.#settings.set(PREKEYS_SEQ_META, String(seq));
    return await signPrekeyBundle(this.#identity, secrets, { now, seq });
  }

  /**
   * The responder's side of X3DH for a first message's header: the new
   * session's state (encrypting its headers if the header's version says so).
   * A stranger beyond the budget opens the session with the prekey it
   * named, and the prekey stays on offer. Call under the session lock.
   *
   * @throws {DecryptionError} If there are no prekeys or the header names unknown ones.
   */
  async respond(header: X3dhHeader, stranger: boolean, now: number): Promise<Response> {
    const secrets = await this.#load();
    if (secrets === undefined) throw new DecryptionError();
    let response;
    try {
      response = await respondX3dh(this.#identity, header, secrets);
    } catch (cause) {
      throw new DecryptionError({ cause });
    }
    const { sharedSecret, ownRatchetKeyPair, associatedData, headerKeys } = response;
    const state = headerKeys === undefined
      ? initReceiver(sharedSecret, ownRatchetKeyPair, associatedData)
      : initHeaderReceiver(sharedSecret, ownRatchetKeyPair, associatedData, {
        nextSending: headerKeys.responder,
        nextReceiving: headerKeys.initiator,
      });
    const used = response.consumeOneTimePrekeyId;
    if (used === null || (stranger && !this.#strangers.allows(now))) {
      return { state, save: () => {} };
    }
    const sealed = await this.#seal(consumeOneTimePrekey(secrets, used));
    return {
      state,
      save: () => {
        this.#settings.setSecret(PREKEYS_SECRET, sealed);
        if (stranger) this.#strangers.spend(now);
        queueMicrotask(this.#onChanged);
      },
    };
  }
}
