//! A small deterministic generator (xorshift) for the benchmarks' generated
//! pipelines, so every run measures the same file. Shared by the runtime's
//! deploy benchmark too (`#[path]`).

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
