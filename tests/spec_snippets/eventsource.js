const eventSource = new EventSource('/api/chat/stream?question=What+is+AI');

eventSource.onmessage = function(event) {
    if (event.data === '[DONE]') {
        eventSource.close();
        console.log('Stream completed');
        return;
    }
    
    const data = JSON.parse(event.data);
    
    if (data.error) {
        console.error('Error:', data.error);
        return;
    }
    
    if (data.content) {
        // Append content to your UI
        document.getElementById('response').textContent += data.content;
    }
};

eventSource.onerror = function(error) {
    console.error('EventSource error:', error);
    eventSource.close();
};
