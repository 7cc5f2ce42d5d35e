//! The page as independent LZ4 blocks, for scrapes without gzip: about a
//! fifth of the text's size, and each block decompresses straight into the
//! response's next chunk at close to memory speed.

use std::{
    io::Write,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Bytes;

/// Text per block: one response chunk.
pub const BLOCK: usize = 64 * 1024;

/// The compressed page.
#[derive(Clone, Debug)]
pub struct Lz4Page {
    data: Bytes,
    /// Per block: where its compressed bytes end in `data`, and its text length.
    blocks: Arc<[(u32, u32)]>,
}

impl Lz4Page {
    /// The length of the text it decompresses to.
    pub fn text_len(&self) -> u64 {
        self.blocks.iter().map(|&(_, len)| u64::from(len)).sum()
    }
}

/// Compresses what is written, a block at a time.
pub struct Lz4Writer {
    pending: Vec<u8>,
    scratch: Vec<u8>,
    data: Vec<u8>,
    blocks: Vec<(u32, u32)>,
}

impl Default for Lz4Writer {
    fn default() -> Self {
        Self {
            pending: Vec::with_capacity(BLOCK),
            scratch: vec![0; lz4_flex::block::get_maximum_output_size(BLOCK)],
            data: Vec::new(),
            blocks: Vec::new(),
        }
    }
}

impl Lz4Writer {
    fn compress_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = lz4_flex::block::compress_into(&self.pending, &mut self.scratch)
            .map_err(std::io::Error::other)?;
        self.data.extend_from_slice(&self.scratch[..n]);
        let end = u32::try_from(self.data.len()).map_err(std::io::Error::other)?;
        // pending.len() <= BLOCK
        self.blocks.push((end, self.pending.len() as u32));
        self.pending.clear();
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<Lz4Page> {
        self.compress_pending()?;
        // Kept until the next snapshot: no spare capacity.
        self.data.shrink_to_fit();
        Ok(Lz4Page {
            data: Bytes::from(self.data),
            blocks: self.blocks.into(),
        })
    }
}

impl Write for Lz4Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(BLOCK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == BLOCK {
            self.compress_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The text of an [`Lz4Page`], a block at a time.
pub struct Lz4Reader {
    page: Lz4Page,
    next: usize,
    /// A block that did not fit the caller's buffer, and how much of it
    /// was read.
    spill: Option<(Vec<u8>, usize)>,
}

impl Lz4Reader {
    pub fn new(page: Lz4Page) -> Self {
        Self {
            page,
            next: 0,
            spill: None,
        }
    }

    /// Decompresses the next block into `out` (its text length long).
    fn decompress_next(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        let start = match self.next {
            0 => 0,
            i => self.page.blocks[i - 1].0 as usize,
        };
        let end = self.page.blocks[self.next].0 as usize;
        let block = self.page.data.get(start..end).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "an LZ4 block out of range")
        })?;
        let n = lz4_flex::block::decompress_into(block, out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if n != out.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "an LZ4 block shorter than recorded",
            ));
        }
        self.next += 1;
        Ok(())
    }
}

impl std::io::Read for Lz4Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.spill.is_none() {
            let Some(&(_, len)) = self.page.blocks.get(self.next) else {
                return Ok(0);
            };
            let len = len as usize;
            if buf.len() >= len {
                self.decompress_next(&mut buf[..len])?;
                return Ok(len);
            }
            let mut block = vec![0; len];
            self.decompress_next(&mut block)?;
            self.spill = Some((block, 0));
        }
        let Some((block, read)) = &mut self.spill else {
            unreachable!("set above");
        };
        let n = buf.len().min(block.len() - *read);
        buf[..n].copy_from_slice(&block[*read..*read + n]);
        *read += n;
        if *read == block.len() {
            self.spill = None;
        }
        Ok(n)
    }
}

impl tokio::io::AsyncRead for Lz4Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // In-memory input: a block's worth of CPU, no waiting.
        let n = std::io::Read::read(&mut *self, buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn text(lines: usize) -> String {
        (0..lines)
            .map(|i| format!("planet_series{{n=\"{i}\"}} {i}\n"))
            .collect()
    }

    fn compress(text: &str, write_size: usize) -> Lz4Page {
        let mut w = Lz4Writer::default();
        for chunk in text.as_bytes().chunks(write_size) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_across_blocks_and_read_sizes() {
        let text = text(50_000);
        assert!(text.len() > 10 * BLOCK);
        for write_size in [1, 1000, BLOCK, 3 * BLOCK + 7] {
            let page = compress(&text, write_size);
            assert!(page.data.len() < text.len() / 3, "{}", page.data.len());
            for read_size in [BLOCK, 2 * BLOCK, 100, 1] {
                if read_size == 1 && write_size != BLOCK {
                    continue; // slow; one pass covers it
                }
                let mut reader = Lz4Reader::new(page.clone());
                let mut out = Vec::new();
                let mut buf = vec![0; read_size];
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                assert_eq!(out, text.as_bytes(), "write {write_size} read {read_size}");
            }
        }
    }

    #[test]
    fn an_empty_page_reads_empty() {
        let page = Lz4Writer::default().finish().unwrap();
        let mut out = Vec::new();
        Lz4Reader::new(page).read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_corrupt_block_is_an_error() {
        let mut page = compress(&text(10_000), BLOCK);
        let mut data = page.data.to_vec();
        data.truncate(data.len() / 2);
        page.data = Bytes::from(data);
        let mut out = Vec::new();
        assert!(Lz4Reader::new(page).read_to_end(&mut out).is_err());
    }
}
