// The torch.save writer lives in the product (the demo bundle writes a Qwen-Scope .pt with it).
export * from '../../src/model/sae/torch-save.js';
