/**
 * A restricted unpickler for `torch.save` files: it understands only the opcodes and globals that
 * saving a (nested, possibly Ordered) dict of tensors and parameters produces, and builds plain data
 * from them. It never imports or calls anything: a global is a name looked up in a fixed table of
 * four rebuilders and the storage types; any other global or opcode is refused with its name.
 *
 * Tensors come out as TensorRef (storage, offset, size, stride); their bytes stay in the zip until
 * TorchFile (torch-file.ts) reads them by offset.
 *
 * Budgets (src/model/artifact-limits.ts): memo references (BINGET, DUP) share values, never copy them, so the
 * result is a DAG no larger than the pickle; every opcode and every value it copies counts against a work
 * budget (repeated BUILDs or SETITEMS of one big container are quadratic otherwise); MARKs are kept on a stack
 * of their own (no scan per opcode); error messages describe values to a bounded size, however deep or shared.
 */
import { formatError } from '../../errors.js';
import { ARTIFACT_LIMITS, clip } from '../artifact-limits.js';
import { DType } from '../dtypes.js';

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
export type PyKey = string | number | boolean | null;
export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
  constructor(readonly ordered: boolean) {}
}
/** A storage as torch.save's persistent id names it: ('storage', torch.XStorage, key, location, numel). */
export class StorageRef {
  constructor(readonly key: string, readonly dtype: DType, readonly location: string, readonly numel: number) {}
}
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
    /** saved as torch.nn.Parameter */
    readonly parameter: boolean,
  ) {}
}
/** An allowed global: a storage type or one of the rebuild functions (never executed, only interpreted). */
export class PyGlobal {
  constructor(readonly qualname: string) {}
}
export type PyValue = null | boolean | number | string | PyTuple | PyValue[] | PyDict | StorageRef | TensorRef | PyGlobal;

const STORAGE_TYPES: Record<string, DType> = {
  'torch.FloatStorage': 'F32',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
};
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const REBUILD_PARAMETER_WITH_STATE = 'torch._utils._rebuild_parameter_with_state';
const ORDERED_DICT = 'collections.OrderedDict';
const CALLABLES = new Set([REBUILD_TENSOR, REBUILD_PARAMETER, REBUILD_PARAMETER_WITH_STATE, ORDERED_DICT]);

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

/** Opcode bytes, named as in CPython's pickletools. */
const OP = {
  PROTO: 0x80, FRAME: 0x95, STOP: 0x2e,
  MARK: 0x28, POP: 0x30, POP_MARK: 0x31, DUP: 0x32,
  EMPTY_DICT: 0x7d, EMPTY_LIST: 0x5d, EMPTY_TUPLE: 0x29,
  TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, LIST: 0x6c, DICT: 0x64,
  BINPUT: 0x71, LONG_BINPUT: 0x72, MEMOIZE: 0x94, BINGET: 0x68, LONG_BINGET: 0x6a,
  BINUNICODE: 0x58, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, BINFLOAT: 0x47,
  NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89,
  GLOBAL: 0x63, STACK_GLOBAL: 0x93, BINPERSID: 0x51, REDUCE: 0x52, BUILD: 0x62,
  SETITEM: 0x73, SETITEMS: 0x75, APPEND: 0x61, APPENDS: 0x65,
} as const;
const OP_NAMES = new Map<number, string>(Object.entries(OP).map(([k, v]) => [v, k]));

/** Interpret a pickle produced by torch.save; `where` names the file and entry in errors. */
export function unpickle(data: Uint8Array, where: string, workBudget: number = ARTIFACT_LIMITS.pickleWork): PyValue {
  return new Unpickler(data, where, workBudget).run();
}

class Unpickler {
  private pos = 0;
  private stack: StackItem[] = [];
  /** stack positions of the MARKs on the stack, innermost last */
  private marks: number[] = [];
  private work = 0;
  private readonly memo = new Map<number, PyValue>();
  private readonly storages = new Map<string, StorageRef>();
  private readonly view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly where: string,
    private readonly workBudget: number,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  run(): PyValue {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      this.spend(1, at);
      switch (op) {
        case OP.PROTO: {
          const v = this.u8();
          if (v > 5) throw this.err(at, `pickle protocol ${v} is newer than 5`);
          break;
        }
        case OP.FRAME: this.take(8); break; // frame length: framing does not change meaning
        case OP.STOP: {
          if (this.stack.length !== 1) throw this.err(at, `STOP with ${this.stack.length} items on the stack (expected 1)`);
          return this.value(this.stack.pop(), at, 'STOP');
        }
        case OP.MARK: this.marks.push(this.stack.length); this.stack.push(MARK); break;
        case OP.POP: this.pop(at, 'POP'); break;
        case OP.POP_MARK: this.popMark(at, 'POP_MARK'); break;
        case OP.DUP: this.stack.push(this.top(at, 'DUP')); break;
        case OP.EMPTY_DICT: this.stack.push(new PyDict(false)); break;
        case OP.EMPTY_LIST: this.stack.push([]); break;
        case OP.EMPTY_TUPLE: this.stack.push(new PyTuple([])); break;
        case OP.TUPLE: this.stack.push(new PyTuple(this.popMark(at, 'TUPLE'))); break;
        case OP.TUPLE1: case OP.TUPLE2: case OP.TUPLE3: {
          const n = op - OP.TUPLE1 + 1;
          const items: PyValue[] = [];
          for (let i = 0; i < n; i++) items.unshift(this.pop(at, OP_NAMES.get(op)!));
          this.stack.push(new PyTuple(items));
          break;
        }
        case OP.LIST: this.stack.push(this.popMark(at, 'LIST')); break;
        case OP.DICT: {
          const d = new PyDict(false);
          this.setItems(d, this.popMark(at, 'DICT'), at);
          this.stack.push(d);
          break;
        }
        case OP.BINPUT: this.memo.set(this.u8(), this.top(at, 'BINPUT')); break;
        case OP.LONG_BINPUT: this.memo.set(this.u32(), this.top(at, 'LONG_BINPUT')); break;
        case OP.MEMOIZE: this.memo.set(this.memo.size, this.top(at, 'MEMOIZE')); break;
        case OP.BINGET: case OP.LONG_BINGET: {
          const i = op === OP.BINGET ? this.u8() : this.u32();
          if (!this.memo.has(i)) throw this.err(at, `memo key ${i} was never stored`);
          this.stack.push(this.memo.get(i)!);
          break;
        }
        case OP.BINUNICODE: this.stack.push(this.utf8(this.u32())); break;
        case OP.SHORT_BINUNICODE: this.stack.push(this.utf8(this.u8())); break;
        case OP.BINUNICODE8: this.stack.push(this.utf8(this.u64())); break;
        case OP.BININT: this.stack.push(this.view.getInt32(this.take(4), true)); break;
        case OP.BININT1: this.stack.push(this.u8()); break;
        case OP.BININT2: this.stack.push(this.view.getUint16(this.take(2), true)); break;
        case OP.LONG1: this.stack.push(this.long(this.u8(), at)); break;
        case OP.BINFLOAT: this.stack.push(this.view.getFloat64(this.take(8), false)); break;
        case OP.NONE: this.stack.push(null); break;
        case OP.NEWTRUE: this.stack.push(true); break;
        case OP.NEWFALSE: this.stack.push(false); break;
        case OP.GLOBAL: {
          const module = this.line(at);
          const name = this.line(at);
          this.stack.push(this.global(module, name, at));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop(at, 'STACK_GLOBAL');
          const module = this.pop(at, 'STACK_GLOBAL');
          if (typeof module !== 'string' || typeof name !== 'string') throw this.err(at, 'STACK_GLOBAL needs two strings');
          this.stack.push(this.global(module, name, at));
          break;
        }
        case OP.BINPERSID: this.stack.push(this.persistentLoad(this.pop(at, 'BINPERSID'), at)); break;
        case OP.REDUCE: {
          const args = this.pop(at, 'REDUCE');
          const fn = this.pop(at, 'REDUCE');
          this.stack.push(this.call(fn, args, at));
          break;
        }
        case OP.BUILD: {
          const state = this.pop(at, 'BUILD');
          const obj = this.top(at, 'BUILD');
          if (!isEmptyState(state)) {
            if (obj instanceof PyDict && state instanceof PyDict) {
              this.spend(state.map.size, at);
              for (const [k, v] of state.map) obj.map.set(k, v);
            }
            else throw this.err(at, `BUILD with a non-empty state on ${describe(obj)} is not something torch.save of tensors produces`);
          }
          break;
        }
        case OP.SETITEM: {
          const v = this.pop(at, 'SETITEM');
          const k = this.pop(at, 'SETITEM');
          this.setItems(this.dictOnTop(at, 'SETITEM'), [k, v], at);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark(at, 'SETITEMS');
          this.setItems(this.dictOnTop(at, 'SETITEMS'), items, at);
          break;
        }
        case OP.APPEND: {
          const v = this.pop(at, 'APPEND');
          this.listOnTop(at, 'APPEND').push(v);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark(at, 'APPENDS');
          const list = this.listOnTop(at, 'APPENDS');
          for (const item of items) list.push(item);
          break;
        }
        default: {
          const name = OP_NAMES.get(op);
          const printable = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : '';
          throw this.err(at, `opcode 0x${op.toString(16).padStart(2, '0')}${printable}${name ? ` (${name})` : ''} is not allowed in a torch.save file of tensors`);
        }
      }
    }
  }

  /** Count `n` steps of work; past the budget the pickle is refused (it cannot be a state dict of tensors). */
  private spend(n: number, at: number): void {
    this.work += n;
    if (this.work > this.workBudget)
      throw this.err(at, `unpickling takes more than ${this.workBudget} steps (opcodes and values copied): refusing it as hostile or corrupt`);
  }

  // ------------------------------------------------------------- torch semantics

  private global(module: string, name: string, at: number): PyGlobal {
    const q = `${module}.${name}`;
    if (CALLABLES.has(q) || Object.hasOwn(STORAGE_TYPES, q)) return new PyGlobal(q);
    throw this.err(at, `pickle references global '${clip(q)}', which is not allowed (only torch tensor/parameter rebuilders, torch float/int storages and collections.OrderedDict are): refusing to load it`);
  }

  /** torch.save's persistent id: ('storage', storage_type, key, location, numel). */
  private persistentLoad(pid: PyValue, at: number): StorageRef {
    const items = pid instanceof PyTuple ? pid.items : [];
    const [tag, type, key, location, numel] = items;
    if (items.length !== 5 || tag !== 'storage' || !(type instanceof PyGlobal) || typeof key !== 'string' || typeof location !== 'string' || !isCount(numel))
      throw this.err(at, `persistent id ${describe(pid)} is not a torch storage record ('storage', type, key, location, numel)`);
    const dtype = STORAGE_TYPES[type.qualname];
    if (!dtype) throw this.err(at, `persistent id names '${type.qualname}', which is not a storage type`);
    if (key.length > 256 || !/^[A-Za-z0-9_.-]+$/.test(key) || key.includes('..')) throw this.err(at, `storage key '${clip(key)}' is not a plain name`);
    const seen = this.storages.get(key);
    if (seen) {
      if (seen.dtype !== dtype || seen.numel !== numel) throw this.err(at, `storage '${key}' is declared twice with different types or sizes`);
      return seen;
    }
    if (this.storages.size >= ARTIFACT_LIMITS.tensors) throw this.err(at, `more than ${ARTIFACT_LIMITS.tensors} storages`);
    const s = new StorageRef(key, dtype, location, numel);
    this.storages.set(key, s);
    return s;
  }

  private call(fn: PyValue, args: PyValue, at: number): PyValue {
    if (!(fn instanceof PyGlobal) || !CALLABLES.has(fn.qualname)) throw this.err(at, `REDUCE on ${describe(fn)}, which is not a callable this loader knows`);
    if (!(args instanceof PyTuple)) throw this.err(at, `REDUCE arguments for ${fn.qualname} are not a tuple`);
    const a = args.items;
    switch (fn.qualname) {
      case ORDERED_DICT:
        if (a.length !== 0) throw this.err(at, `${ORDERED_DICT} called with arguments`);
        return new PyDict(true);
      case REBUILD_TENSOR: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        const [storage, offset, size, stride] = a;
        if (a.length < 6 || a.length > 7 || !(storage instanceof StorageRef) || !isCount(offset)) throw this.err(at, `${REBUILD_TENSOR} called with unexpected arguments ${describe(args)}`);
        const shape = intTuple(size);
        const strides = intTuple(stride);
        if (!shape || !strides || shape.length !== strides.length) throw this.err(at, `${REBUILD_TENSOR}: size ${describe(size)} and stride ${describe(stride)} are not matching tuples of non-negative integers`);
        return new TensorRef(storage, offset, shape, strides, false);
      }
      case REBUILD_PARAMETER:
      case REBUILD_PARAMETER_WITH_STATE: {
        // (data, requires_grad, backward_hooks[, state])
        const [data] = a;
        const want = fn.qualname === REBUILD_PARAMETER ? 3 : 4;
        if (a.length !== want || !(data instanceof TensorRef)) throw this.err(at, `${fn.qualname} called with unexpected arguments ${describe(args)}`);
        if (want === 4 && !isEmptyState(a[3])) throw this.err(at, `${fn.qualname}: parameters carrying Python state are not supported`);
        return new TensorRef(data.storage, data.storageOffset, data.shape, data.stride, true);
      }
    }
    throw this.err(at, `unreachable: ${fn.qualname}`);
  }

  // ------------------------------------------------------------- stack and bytes

  private setItems(d: PyDict, items: PyValue[], at: number): void {
    if (items.length % 2) throw this.err(at, 'odd number of items for a dict');
    this.spend(items.length, at);
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i];
      if (!(k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean')) throw this.err(at, `dict key ${describe(k)} is not a string or number`);
      d.map.set(k, items[i + 1]);
    }
  }
  private dictOnTop(at: number, op: string): PyDict {
    const d = this.top(at, op);
    if (!(d instanceof PyDict)) throw this.err(at, `${op} on ${describe(d)}, not a dict`);
    return d;
  }
  private listOnTop(at: number, op: string): PyValue[] {
    const l = this.top(at, op);
    if (!Array.isArray(l)) throw this.err(at, `${op} on ${describe(l)}, not a list`);
    return l;
  }
  private value(v: StackItem | undefined, at: number, op: string): PyValue {
    if (v === undefined) throw this.err(at, `${op} on an empty stack`);
    if (v === MARK) throw this.err(at, `${op} found a MARK where a value was expected`);
    return v;
  }
  private pop(at: number, op: string): PyValue {
    return this.value(this.stack.pop(), at, op); // a MARK is refused, so the mark stack stays right
  }
  private top(at: number, op: string): PyValue {
    return this.value(this.stack[this.stack.length - 1], at, op);
  }
  private popMark(at: number, op: string): PyValue[] {
    const m = this.marks.pop();
    if (m === undefined) throw this.err(at, `${op} without a MARK`);
    this.spend(this.stack.length - m, at);
    const items = this.stack.splice(m) as PyValue[];
    items.shift();
    return items;
  }
  private take(n: number): number {
    if (this.pos + n > this.data.length) throw this.err(this.pos, `pickle is truncated (needs ${n} more bytes, ${this.data.length - this.pos} left)`);
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private u8(): number {
    return this.data[this.take(1)];
  }
  private u32(): number {
    return this.view.getUint32(this.take(4), true);
  }
  private u64(): number {
    const v = this.view.getBigUint64(this.take(8), true);
    if (v > BigInt(this.data.length)) throw this.err(this.pos - 8, `length ${v} is past the end of the pickle`);
    return Number(v);
  }
  private utf8(n: number): string {
    const p = this.take(n);
    return new TextDecoder('utf-8', { fatal: false }).decode(this.data.subarray(p, p + n));
  }
  private line(at: number): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) throw this.err(at, 'GLOBAL name is not terminated by a newline (truncated pickle?)');
    const s = new TextDecoder('latin1').decode(this.data.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  /** LONG1: n bytes of little-endian two's complement. */
  private long(n: number, at: number): number {
    const p = this.take(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.data[p + i]);
    if (n > 0 && this.data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw this.err(at, `integer ${v} is too large`);
    return Number(v);
  }
  private err(at: number, msg: string) {
    return formatError(`${this.where}: ${msg} (pickle byte ${at})`);
  }
}

function isCount(v: PyValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
function intTuple(v: PyValue | undefined): number[] | null {
  if (!(v instanceof PyTuple) || !v.items.every(isCount)) return null;
  return v.items as number[];
}
function isEmptyState(v: PyValue): boolean {
  return v === null || (v instanceof PyDict && v.map.size === 0) || (v instanceof PyTuple && v.items.length === 0);
}
/**
 * A value for an error message, bounded: two levels deep, three items per tuple, short strings. Memo references
 * can make a value of a few hundred bytes a DAG with 2^n paths: describing it in full would be exponential.
 */
function describe(v: PyValue | undefined, depth = 2): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (v instanceof PyGlobal) return `global '${clip(v.qualname)}'`;
  if (v instanceof PyTuple) {
    if (depth === 0) return `(${v.items.length} items)`;
    const shown = v.items.slice(0, 3).map((x) => describe(x, depth - 1));
    if (v.items.length > 3) shown.push(`... ${v.items.length - 3} more`);
    return `(${shown.join(', ')})`;
  }
  if (v instanceof PyDict) return 'a dict';
  if (v instanceof StorageRef) return `storage '${clip(v.key)}'`;
  if (v instanceof TensorRef) return 'a tensor';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `'${clip(v, 40)}'`;
  return String(v);
}
